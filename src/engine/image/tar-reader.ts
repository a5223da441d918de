// Reads a (possibly gzip'd) tarball entry by entry with tar's own parser, one entry at a time:
// the next entry is handed over only after the previous handler has completely finished, so a
// handler may rely on the file system reflecting every earlier entry (the symlink checks do).
import { createReadStream } from "node:fs";
import { Parser, type ReadEntry } from "tar";

export type EntryHandler = (entry: ReadEntry) => Promise<void>;

export interface ReadTarOptions {
  /** Sees every raw byte of the file, e.g. to hash it in the same pass. */
  onBytes?: (chunk: Buffer) => void;
}

/** Calls `onEntry` for each entry in order; the handler must consume the entry's data or resume() it. */
export function readTar(file: string, onEntry: EntryHandler, opts: ReadTarOptions = {}): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    let failed = false;
    const source = createReadStream(file);
    // strict: a damaged archive (bad checksum, truncation, junk) fails instead of being skipped.
    const parser = new Parser({ strict: true });
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      source.destroy();
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
    source.on("error", fail);
    // tar's parser quietly drops a partial last header; an uncompressed tar is whole 512-byte
    // blocks, so a size that is not a multiple means it was cut short. (Truncated gzip fails in zlib.)
    let size = 0;
    let compressed: boolean | undefined;
    source.on("data", (chunk) => {
      const buf = chunk as Buffer;
      compressed ??= (buf[0] === 0x1f && buf[1] === 0x8b) || (buf.length >= 4 && buf.readUInt32LE(0) === 0xfd2fb528);
      size += buf.length;
      opts.onBytes?.(buf);
      if (!parser.write(buf)) {
        source.pause();
        parser.once("drain", () => source.resume());
      }
    });
    source.on("end", () => {
      if (!compressed && size % 512 !== 0) return fail(new Error(`${file}: not a readable tar archive: truncated (${size} bytes is not a whole number of 512-byte blocks)`));
      parser.end();
    });
  });
}

/** The entry path as archive-relative parts: "./a//b/" -> ["a","b"]; "/abs" is taken as root-relative. */
export function entryParts(path: string): string[] {
  return path.split("/").filter((p) => p !== "" && p !== ".");
}
