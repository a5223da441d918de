// The local image store: import tarballs (rootfs, `docker save`, OCI layout), resolve refs.
export type { ImageConfig, LocalImage } from "./types.js";
export { normalizeRef, parseRef, familiarRef } from "./reference.js";
export { ImageStore, defaultImagesRoot, type ImportOptions } from "./store.js";
export { importCommand, listImages, removeImage, formatImageTable, formatSize, type ImageRow } from "./commands.js";
export { UnsafeEntryError } from "./rootfs-writer.js";
export { DigestMismatchError } from "./digest.js";
