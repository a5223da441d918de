// `docker save` archives: manifest.json lists, per image, its config file and layer tars.
// Verified: the config's sha256 against its file name (the image ID) when the name is one, each
// layer against the config's rootfs.diff_ids, and OCI-style "blobs/sha256/<hex>" names.
import { z } from "zod";
import { parseConfigJson } from "./config.js";
import { checkDigest, sha256Bytes, sha256File } from "./digest.js";
import { normalizeRef } from "./reference.js";
import { diffIdToCheck, type StagedArchive, type UnpackPlan } from "./staging.js";

const manifestSchema = z.array(z.looseObject({
  Config: z.string(),
  RepoTags: z.array(z.string()).nullish(),
  Layers: z.array(z.string()),
})).min(1, "it lists no image");

type Entry = z.infer<typeof manifestSchema>[number];

const HEX_NAME = /(?:^|\/)([a-f0-9]{64})(?:\.json)?$/;

function pickImage(entries: Entry[], ref: string, label: string): Entry {
  if (entries.length === 1) return entries[0]!;
  const tagged = (e: Entry) => (e.RepoTags ?? []).some((t) => {
    try {
      return normalizeRef(t) === ref;
    } catch {
      return false;
    }
  });
  const match = entries.find(tagged);
  if (match) return match;
  const tags = entries.map((e) => (e.RepoTags ?? []).join(",") || e.Config).join("; ");
  throw new Error(`${label}: the archive holds ${entries.length} images (${tags}); import it under one of their tags`);
}

async function verifyNamedBlob(file: string, rel: string, what: string): Promise<string> {
  const actual = await sha256File(file);
  const m = HEX_NAME.exec(rel);
  if (m) checkDigest(what, `sha256:${m[1]}`, actual);
  return actual;
}

export async function readDockerArchive(staged: StagedArchive, ref: string): Promise<UnpackPlan> {
  const { json } = await staged.readJson("manifest.json", "manifest");
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) throw new Error(`${staged.label}: unexpected manifest.json: ${z.prettifyError(parsed.error)}`);
  const image = pickImage(parsed.data, ref, staged.label);

  const { bytes: configBytes } = await staged.readJson(image.Config, "image config");
  const digest = sha256Bytes(configBytes);
  const m = HEX_NAME.exec(image.Config);
  if (m) checkDigest(`${staged.label}: image config ${image.Config}`, `sha256:${m[1]}`, digest);
  const { config, created, diffIds } = parseConfigJson(configBytes, staged.label);
  if (diffIds.length !== image.Layers.length) {
    throw new Error(`${staged.label}: the config lists ${diffIds.length} layers but manifest.json ${image.Layers.length}`);
  }

  const layers: string[] = [];
  const unchecked: Array<string | undefined> = [];
  const blobDigests: string[] = [];
  for (const [i, rel] of image.Layers.entries()) {
    const file = await staged.file(rel, "layer");
    const raw = await verifyNamedBlob(file, rel, `${staged.label}: layer ${rel}`);
    unchecked.push(await diffIdToCheck(file, raw, diffIds[i]!, `${staged.label}: layer ${rel}`));
    blobDigests.push(raw);
    layers.push(file);
  }
  return { digest, config, created, layers, diffIds: unchecked, layerDigests: blobDigests };
}
