// Recognises what kind of tarball `import` was given, by content: a `docker save` archive
// (manifest.json), an OCI image layout (oci-layout + index.json) or else a plain rootfs.
import { createHash } from "node:crypto";
import { extract } from "tar";
import { readTar } from "./tar-reader.js";

export type ArchiveKind = "rootfs" | "docker-archive" | "oci-layout";

export interface ArchiveScan {
  kind: ArchiveKind;
  /** sha256 of the tarball file as given: a plain rootfs's identity. */
  fileDigest: string;
}

export async function scanArchive(file: string): Promise<ArchiveScan> {
  const hash = createHash("sha256");
  const topLevel = new Set<string>();
  await readTar(file, async (entry) => {
    entry.resume();
    const path = entry.path.replace(/^(\.\/|\/)+/, "");
    if (!path.includes("/")) topLevel.add(path);
  }, { onBytes: (chunk) => hash.update(chunk) });
  // Docker >= 25 writes both files; the OCI layout is the one with verifiable digests.
  const kind: ArchiveKind = topLevel.has("oci-layout") && topLevel.has("index.json")
    ? "oci-layout"
    : topLevel.has("manifest.json") ? "docker-archive" : "rootfs";
  return { kind, fileDigest: `sha256:${hash.digest("hex")}` };
}

/**
 * Unpacks an image archive (blobs and JSON, not a rootfs) into a private staging directory.
 * tar's default protections apply here (no "..", no absolute paths, nothing through symlinks).
 */
export async function unpackArchive(file: string, dir: string): Promise<void> {
  await extract({ file, cwd: dir, strict: true, preserveOwner: false });
}
