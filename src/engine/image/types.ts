// What the image store hands out. The rootfs directory is shared read-only by every sandbox of
// the image (runsc puts a memory overlay on top), so nothing may ever write into it.

/** The parts of an OCI/Docker image config a sandbox needs. */
export interface ImageConfig {
  env: string[];
  workingDir: string;
  user: string;
  entrypoint: string[];
  cmd: string[];
}

export interface LocalImage {
  /** Canonical reference, e.g. "docker.io/library/alpine:latest". */
  ref: string;
  /** "sha256:<hex>": of the image config (the image ID) or, for a plain rootfs, of its tarball. */
  digest: string;
  /** Absolute path of the unpacked root file system. */
  rootfs: string;
  config: ImageConfig;
  /** Bytes of file content in the rootfs (hard links counted once). */
  sizeBytes: number;
  /** ISO time: the image's own creation time if its config has one, else the import time. */
  created: string;
  /** How it got here: "import:rootfs", "import:docker-archive", "import:oci-layout" or "pull". */
  source: string;
  /** For pulled images: the manifest (or index) digest, as `docker pull` prints it. */
  repoDigest?: string;
}

/** What is kept on disk per content digest (image.json next to rootfs/). */
export type StoredImage = Omit<LocalImage, "ref" | "rootfs" | "repoDigest"> & {
  /** For pulled images: the blobs (manifests, config, layers) it is made of, kept by `prune`. */
  blobs?: string[];
};
