// Reads a (possibly gzip'd or zstd'd) tarball entry by entry with tar's own parser, one entry at a
// time: the next entry is handed over only after the previous handler has completely finished, so
// a handler may rely on the file system reflecting every earlier entry (the symlink checks do).
// Decompression is ours (decompress.ts), so tar's parser only ever sees a plain tar.
import { createReadStream } from "node:fs";
import { Transform } from "node:stream";
import { Parser, type ReadEntry } from "tar";
import { decompressed, fileCompression } from "./decompress.js";

export type EntryHandler = (entry: ReadEntry) => Promise<void>;

export interface ReadTarOptions {
  /** Sees every raw (still compressed) byte of the file, e.g. to hash it in the same pass. */
  onBytes?: (chunk: Buffer) => void;
}

/** Calls `onEntry` for each entry in order; the handler must consume the entry's data or resume() it. */
export async function readTar(file: string, onEntry: EntryHandler, opts: ReadTarOptions = {}): Promise<void> {
  const compression = await fileCompression(file);
  return new Promise((resolvePromise, reject) => {
    let failed = false;
    let rawSize = 0;
    const raw = createReadStream(file);
    const tap = new Transform({
      transform(chunk: Buffer, _enc, done) {
        rawSize += chunk.length;
        opts.onBytes?.(chunk);
        done(null, chunk);
      },
    });
    raw.on("error", (e) => tap.destroy(e));
    const source = decompressed(raw.pipe(tap), compression);
    // strict: a damaged archive (bad checksum, truncation, junk) fails instead of being skipped.
    const parser = new Parser({ strict: true });
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      source.destroy();
      raw.destroy();
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    let chain: Promise<void> = Promise.resolve();
    parser.on("entry", (entry: ReadEntry) => {
      chain = chain.then(async () => {
        if (failed) return void entry.resume();
        await onEntry(entry);
      }).catch(fail);
    });
    parser.on("error", (err: Error) => fail(new Error(`${file}: not a readable tar archive: ${err.message}`)));
    parser.on("end", () => {
      void chain.then(() => {
        if (!failed) resolvePromise();
      });
    });
    source.on("error", (err: Error) => fail(compression === "none" ? err : new Error(`${file}: not a readable ${compression} file: ${err.message}`, { cause: err })));
    source.on("data", (chunk: Buffer) => {
      if (!parser.write(chunk)) {
        source.pause();
        parser.once("drain", () => source.resume());
      }
    });
    // tar's parser quietly drops a partial last header; an uncompressed tar is whole 512-byte
    // blocks, so a size that is not a multiple means it was cut short. (Truncated compressed data
    // fails in the decompressor.)
    source.on("end", () => {
      if (compression === "none" && rawSize % 512 !== 0) return fail(new Error(`${file}: not a readable tar archive: truncated (${rawSize} bytes is not a whole number of 512-byte blocks)`));
      parser.end();
    });
  });
}

/** The entry path as archive-relative parts: "./a//b/" -> ["a","b"]; "/abs" is taken as root-relative. */
export function entryParts(path: string): string[] {
  return path.split("/").filter((p) => p !== "" && p !== ".");
}
