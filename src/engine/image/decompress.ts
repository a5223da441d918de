// Layer compression: gzip and zstd (OCI "tar+gzip" / "tar+zstd"), recognised by their magic bytes
// rather than by media type (docker save and OCI layouts do not always say), and decompressed as
// a stream so a big layer never sits in memory. zstd uses Node's own zlib where it has one
// (Node >= 22.15) and otherwise fzstd, a pure-JS decoder.
import { open } from "node:fs/promises";
import { Readable } from "node:stream";
import { pipeline } from "node:stream";
import * as zlib from "node:zlib";
import { Decompress } from "fzstd";
import { ZstdFrameGuard } from "./zstd-frames.js";

export type Compression = "gzip" | "zstd" | "none";

const ZSTD_MAGIC = 0xfd2fb528; // little-endian 28 b5 2f fd

export function compressionOf(head: Uint8Array): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head.length >= 4 && Buffer.from(head.buffer, head.byteOffset, 4).readUInt32LE(0) === ZSTD_MAGIC) return "zstd";
  return "none";
}

export async function fileCompression(file: string): Promise<Compression> {
  const fh = await open(file, "r");
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await fh.read(head, 0, 4, 0);
    return compressionOf(head.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

/**
 * Node's zlib zstd decoder, when this Node.js has one (added in 22.15). It refuses windows over
 * 2^27 (128 MiB) itself, zstd's default limit.
 */
function nativeZstd(): NodeJS.ReadWriteStream | undefined {
  const make = (zlib as unknown as { createZstdDecompress?: () => NodeJS.ReadWriteStream }).createZstdDecompress;
  return typeof make === "function" ? make() : undefined;
}

// fzstd decodes synchronously everything a push() makes complete, and a zstd block can expand
// ~32000 times (a run-length block: 4 bytes in, 128 KiB out). So input goes in in slices of 256
// bytes (at most ~8 MiB out each), each slice's output handed on with the consumer's backpressure
// before the next: memory stays bounded even for a decompression bomb. fzstd also allocates
// whatever window a frame header asks for, so every header is judged first (zstd-frames.ts).
const FZSTD_SLICE = 256;

async function* fzstdChunks(compressed: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let ready: Buffer[] = [];
  const guard = new ZstdFrameGuard();
  // Each block arrives in a fresh array (fzstd keeps its window separately), so no copy is needed.
  const decoder = new Decompress((data) => {
    guard.produced(data.byteLength);
    ready.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  });
  const push = (chunk: Uint8Array, final: boolean) => {
    guard.feed(chunk); // before the decoder sees a frame header: it may refuse it
    try {
      decoder.push(chunk, final);
    } catch (e) {
      const eof = (e as { code?: number }).code === 5;
      throw new Error(eof ? "zstd data is truncated" : `invalid zstd data: ${(e as Error).message}`);
    }
  };
  for await (const chunk of compressed) {
    for (let at = 0; at < chunk.length; at += FZSTD_SLICE) {
      push(chunk.subarray(at, at + FZSTD_SLICE), false);
      if (ready.length) {
        const out = ready;
        ready = [];
        yield* out;
      }
    }
  }
  push(new Uint8Array(0), true);
  yield* ready;
}

/** The uncompressed bytes of `raw` (a stream of a file compressed as `kind`); errors surface while reading. */
export function decompressed(raw: Readable, kind: Compression): Readable {
  if (kind === "none") return raw;
  const native = kind === "gzip" ? zlib.createGunzip() : nativeZstd();
  if (!native) return Readable.from(fzstdChunks(raw), { objectMode: false });
  // pipeline destroys every stream with the first error, so reading the output rejects with it.
  return pipeline(raw, native, () => undefined) as unknown as Readable;
}
