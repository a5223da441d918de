// OCI image layouts (image-spec image-layout.md): oci-layout, index.json, blobs/<alg>/<hex>.
// Every blob read is checked against the digest (and size) of the descriptor naming it.
import { z } from "zod";
import { parseConfigJson } from "./config.js";
import { checkDigest, digestHex, sha256Bytes, sha256File } from "./digest.js";
import type { Platform } from "./platform.js";
import { checkLayerType, type Descriptor, indexSchema, isIndex, manifestSchema, MAX_INDEX_DEPTH, parseWith as parse, pickPlatform as pick } from "./manifest.js";
import { diffIdToCheck, type StagedArchive, type UnpackPlan } from "./staging.js";
import { stat } from "node:fs/promises";


async function blobPath(staged: StagedArchive, d: Descriptor, what: string): Promise<string> {
  const file = await staged.file(`blobs/sha256/${digestHex(d.digest, `${staged.label}: ${what}`)}`, what);
  if (typeof d.size === "number" && (await stat(file)).size !== d.size) {
    throw new Error(`${staged.label}: ${what} ${d.digest} is corrupted: its size is not the ${d.size} bytes its descriptor says`);
  }
  return file;
}

async function readJsonBlob(staged: StagedArchive, d: Descriptor, what: string): Promise<{ bytes: Buffer; json: unknown }> {
  const { bytes, json } = await staged.readJson(`blobs/sha256/${digestHex(d.digest, `${staged.label}: ${what}`)}`, what);
  checkDigest(`${staged.label}: ${what} ${d.digest}`, d.digest, sha256Bytes(bytes));
  if (typeof d.size === "number" && bytes.length !== d.size) {
    throw new Error(`${staged.label}: ${what} ${d.digest} is corrupted: ${bytes.length} bytes, its descriptor says ${d.size}`);
  }
  return { bytes, json };
}

export async function readOciLayout(staged: StagedArchive, want: Platform): Promise<UnpackPlan> {
  const { json: layout } = await staged.readJson("oci-layout", "oci-layout file");
  parse(z.looseObject({ imageLayoutVersion: z.string() }), layout, "oci-layout file", staged.label);

  // Walk down nested indexes (Docker's index.json points at a manifest list) to one manifest.
  let manifests = parse(indexSchema, (await staged.readJson("index.json", "index")).json, "index.json", staged.label).manifests;
  for (let depth = 0; ; depth++) {
    if (depth > MAX_INDEX_DEPTH) throw new Error(`${staged.label}: image indexes nested too deep`);
    const chosen = pick(manifests, want, staged.label);
    const { json } = await readJsonBlob(staged, chosen, "manifest");
    if (isIndex(chosen.mediaType, json)) {
      manifests = parse(indexSchema, json, "image index", staged.label).manifests;
      continue;
    }
    const manifest = parse(manifestSchema, json, "image manifest", staged.label);
    const { bytes: configBytes } = await readJsonBlob(staged, manifest.config, "image config");
    const { config, created, diffIds } = parseConfigJson(configBytes, staged.label);
    if (diffIds.length !== manifest.layers.length) {
      throw new Error(`${staged.label}: the config lists ${diffIds.length} layers but the manifest ${manifest.layers.length}`);
    }
    const layers: string[] = [];
    const unchecked: Array<string | undefined> = [];
    for (const [i, d] of manifest.layers.entries()) {
      checkLayerType(d, staged.label);
      const file = await blobPath(staged, d, "layer");
      checkDigest(`${staged.label}: layer ${d.digest}`, d.digest, await sha256File(file));
      // The rootfs is stored under the config's digest, so every layer must be the one the config names.
      unchecked.push(await diffIdToCheck(file, d.digest, diffIds[i]!, `${staged.label}: layer ${d.digest} (uncompressed)`));
      layers.push(file);
    }
    return { digest: sha256Bytes(configBytes), config, created, layers, diffIds: unchecked, layerDigests: manifest.layers.map((d) => d.digest) };
  }
}
