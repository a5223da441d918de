// The local image store: import tarballs (rootfs, `docker save`, OCI layout), pull from
// registries, resolve refs, prune.
export type { ImageConfig, LocalImage } from "./types.js";
export { normalizeRef, parseRef, familiarRef } from "./reference.js";
export { ImageStore, type ImportOptions, type PullStoreOptions, type PruneResult } from "./store.js";
export { RegistryError } from "./registry/client.js";
export type { PullEvent } from "./registry/pull.js";
export { UnsafeEntryError } from "./rootfs-writer.js";
export { DigestMismatchError } from "./digest.js";
