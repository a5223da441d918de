// Recognises what kind of tarball `import` was given, by content: a `docker save` archive
// (manifest.json), an OCI image layout (oci-layout + index.json) or else a plain rootfs.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { Unpack } from "tar";
import { decompressed, fileCompression } from "./decompress.js";
import { ENTRY_OVERHEAD, layerSizeLimit, overLimit, type LayerSizeLimit } from "./layer-size-limit.js";
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
 * A compressed archive can expand a thousandfold, so it is held to a layer's caps
 * (layer-size-limit.ts), judged on each entry's header before any of its data is written: no
 * entry (a blob) may be bigger than a layer may be (`entryLimit`: MATCHLOCK_MAX_LAYER_BYTES or
 * the disk's room), and all of them together must fit the disk's room (`totalLimit`). Past
 * either it is overLimit's error; what was unpacked before is left for the caller's cleanup,
 * but only once every file tar had started is closed.
 */
export async function unpackArchive(file: string, dir: string, limits: ArchiveLimits = {}): Promise<void> {
  const entryLimit = limits.entry ?? (await layerSizeLimit(dir));
  const totalLimit = limits.total ?? (await layerSizeLimit(dir, Number.MAX_SAFE_INTEGER));
  const compression = await fileCompression(file);
  const raw = createReadStream(file);
  const source = decompressed(raw, compression);
  let total = 0;
  let failure: Error | undefined;
  const unpack = new Unpack({
    cwd: dir,
    strict: true,
    preserveOwner: false,
    filter: (path, entry) => {
      if (failure) return false;
      const size = "size" in entry ? entry.size ?? 0 : 0;
      total += ENTRY_OVERHEAD + size;
      if (ENTRY_OVERHEAD + size > entryLimit.bytes) stop(overLimit(entryLimit, "unpacks", `${path} in the archive ${file}`));
      else if (total > totalLimit.bytes) stop(overLimit(totalLimit, "unpacks", `the archive ${file}`));
      return !failure;
    },
  });
  // The first failure wins; tar is then ended, not abandoned, so its pending writes finish
  // before "close" (a caller removing `dir` on the error must not race them).
  function stop(err: Error): void {
    if (failure) return;
    failure = err;
    source.unpipe(unpack as unknown as NodeJS.WritableStream);
    raw.destroy();
    source.destroy();
    queueMicrotask(() => unpack.end()); // not from inside tar's own filter call
  }
  return new Promise((resolvePromise, reject) => {
    raw.on("error", (err) => stop(err));
    source.on("error", (err) => stop(compression === "none" ? err : new Error(`${file}: not a readable ${compression} file: ${err.message}`, { cause: err })));
    unpack.on("error", (err: Error) => stop(err));
    unpack.on("close", () => (failure ? reject(failure) : resolvePromise()));
    source.pipe(unpack as unknown as NodeJS.WritableStream);
  });
}

/** Caps for unpackArchive; each by default from layerSizeLimit (see there). */
export interface ArchiveLimits {
  /** For any one entry. */
  entry?: LayerSizeLimit;
  /** For all entries together. */
  total?: LayerSizeLimit;
}
