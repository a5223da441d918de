// OCI image layouts (image-spec image-layout.md): oci-layout, index.json, blobs/<alg>/<hex>.
// Every blob read is checked against the digest (and size) of the descriptor naming it.
import { z } from "zod";
import * as zlib from "node:zlib";
import { parseConfigJson } from "./config.js";
import { checkDigest, digestHex, sha256Bytes, sha256File } from "./digest.js";
import { formatPlatform, platformMatches, type Platform } from "./platform.js";
import type { StagedArchive, UnpackPlan } from "./staging.js";
import { stat } from "node:fs/promises";

const descriptorSchema = z.looseObject({
  mediaType: z.string().nullish(),
  digest: z.string(),
  size: z.number().int().nonnegative().nullish(),
  platform: z.looseObject({ os: z.string(), architecture: z.string(), variant: z.string().nullish().transform((v) => v ?? undefined) }).nullish(),
  annotations: z.record(z.string(), z.string()).nullish(),
});
type Descriptor = z.infer<typeof descriptorSchema>;

const indexSchema = z.looseObject({ mediaType: z.string().nullish(), manifests: z.array(descriptorSchema) });
const manifestSchema = z.looseObject({ mediaType: z.string().nullish(), config: descriptorSchema, layers: z.array(descriptorSchema) });

const INDEX_TYPES = new Set(["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"]);
const MAX_INDEX_DEPTH = 4;

function parse<T>(schema: z.ZodType<T>, json: unknown, what: string, label: string): T {
  const r = schema.safeParse(json);
  if (!r.success) throw new Error(`${label}: unexpected ${what}: ${z.prettifyError(r.error)}`);
  return r.data;
}

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

/** Attestations and other non-image entries that BuildKit puts into indexes. */
function isImageEntry(d: Descriptor): boolean {
  return d.annotations?.["vnd.docker.reference.type"] !== "attestation-manifest" && d.platform?.os !== "unknown";
}

function pick(manifests: Descriptor[], want: Platform, label: string): Descriptor {
  const images = manifests.filter(isImageEntry);
  if (images.length === 1) return images[0]!;
  const match = images.find((d) => platformMatches(d.platform ?? undefined, want));
  if (match) return match;
  const have = images.map((d) => (d.platform ? formatPlatform(d.platform) : d.digest)).join(", ") || "none";
  throw new Error(`${label}: no image for ${formatPlatform(want)} in the archive (it has: ${have})`);
}

function checkLayerType(d: Descriptor, label: string): void {
  const type = d.mediaType ?? "";
  if (type && !type.includes("tar")) throw new Error(`${label}: layer ${d.digest} has unsupported media type ${type}`);
  if (type.includes("zstd") && typeof (zlib as Record<string, unknown>).createZstdDecompress !== "function") {
    throw new Error(`${label}: layer ${d.digest} is zstd-compressed, which needs Node.js >= 22.15 (this is ${process.version})`);
  }
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
    const type = chosen.mediaType ?? (json as { mediaType?: string } | null)?.mediaType ?? "";
    if (INDEX_TYPES.has(type) || (!type && Array.isArray((json as { manifests?: unknown } | null)?.manifests))) {
      manifests = parse(indexSchema, json, "image index", staged.label).manifests;
      continue;
    }
    const manifest = parse(manifestSchema, json, "image manifest", staged.label);
    const { bytes: configBytes } = await readJsonBlob(staged, manifest.config, "image config");
    const { config, created } = parseConfigJson(configBytes, staged.label);
    const layers: string[] = [];
    for (const d of manifest.layers) {
      checkLayerType(d, staged.label);
      const file = await blobPath(staged, d, "layer");
      checkDigest(`${staged.label}: layer ${d.digest}`, d.digest, await sha256File(file));
      layers.push(file);
    }
    return { digest: sha256Bytes(configBytes), config, created, layers };
  }
}
