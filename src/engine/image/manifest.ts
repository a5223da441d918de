// OCI / Docker v2 schema2 manifests, indexes (manifest lists) and descriptors, shared by image
// layouts on disk and registries: parsing, picking the host's platform, checking layer types.
import { z } from "zod";
import { formatPlatform, platformMatches, type Platform } from "./platform.js";

export const descriptorSchema = z.looseObject({
  mediaType: z.string().nullish(),
  digest: z.string(),
  size: z.number().int().nonnegative().nullish(),
  platform: z.looseObject({ os: z.string(), architecture: z.string(), variant: z.string().nullish().transform((v) => v ?? undefined) }).nullish(),
  annotations: z.record(z.string(), z.string()).nullish(),
});
export type Descriptor = z.infer<typeof descriptorSchema>;

export const indexSchema = z.looseObject({ mediaType: z.string().nullish(), manifests: z.array(descriptorSchema) });
export const manifestSchema = z.looseObject({ mediaType: z.string().nullish(), config: descriptorSchema, layers: z.array(descriptorSchema) });
export type ImageManifest = z.infer<typeof manifestSchema>;

export const INDEX_TYPES = new Set(["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"]);
export const MANIFEST_TYPES = new Set(["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"]);
export const MAX_INDEX_DEPTH = 4;

export function parseWith<T>(schema: z.ZodType<T>, json: unknown, what: string, label: string): T {
  const r = schema.safeParse(json);
  if (!r.success) throw new Error(`${label}: unexpected ${what}: ${z.prettifyError(r.error)}`);
  return r.data;
}

/** True when a manifest document (by its media type, else by its shape) is an index. */
export function isIndex(mediaType: string | null | undefined, json: unknown): boolean {
  const type = mediaType ?? (json as { mediaType?: string } | null)?.mediaType ?? "";
  return INDEX_TYPES.has(type) || (!type && Array.isArray((json as { manifests?: unknown } | null)?.manifests));
}

/** Attestations and other non-image entries that BuildKit puts into indexes. */
function isImageEntry(d: Descriptor): boolean {
  return d.annotations?.["vnd.docker.reference.type"] !== "attestation-manifest" && d.platform?.os !== "unknown";
}

/** The index entry for `want`; a lone image entry is taken whatever it claims. */
export function pickPlatform(manifests: Descriptor[], want: Platform, label: string, where = "the archive"): Descriptor {
  const images = manifests.filter(isImageEntry);
  if (images.length === 1) return images[0]!;
  const match = images.find((d) => platformMatches(d.platform ?? undefined, want));
  if (match) return match;
  const have = images.map((d) => (d.platform ? formatPlatform(d.platform) : d.digest)).join(", ") || "none";
  throw new Error(`${label}: no image for ${formatPlatform(want)} in ${where} (it has: ${have})`);
}

/** Layers must be tars (plain, gzip or zstd: decompress.ts tells them apart by content). */
export function checkLayerType(d: Descriptor, label: string): void {
  const type = d.mediaType ?? "";
  if (type && !type.includes("tar")) throw new Error(`${label}: layer ${d.digest} has unsupported media type ${type}`);
}
