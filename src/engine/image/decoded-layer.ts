// A zstd layer decoded once. Unpacking reads a layer up to three times (its diff_id, the whiteout
// scan, the apply), and decoding zstd in pure JS (fzstd, on Node.js without zlib's zstd) is
// slow: so a zstd layer read more than once is decoded into a plain tar next to the unpack,
// hashed on the way, and the passes read that. It takes as much disk as the layer's files will,
// for as long as that layer is being applied, and is cut off past layerSizeLimit (a zstd bomb
// would otherwise fill the disk before its diff_id could be found wrong).
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { decompressed, fileCompression } from "./decompress.js";
import { layerSizeLimit, LayerTooLargeError, NoRoomForLayerError, overLimit, type LayerSizeLimit } from "./layer-size-limit.js";

export interface DecodedLayer {
  /** The plain tar. */
  file: string;
  /** Its sha256: what the image config's rootfs.diff_ids lists. */
  diffId: string;
  remove(): Promise<void>;
}

/**
 * The layer's tar decoded into `dir` when it is zstd and will be read `passes` > 1 times; else
 * undefined. Decoding to more than `limit` (by default layerSizeLimit(dir)) is overLimit's error,
 * and nothing is left behind.
 */
export async function decodeZstdOnce(layer: string, dir: string, passes: number, limit?: LayerSizeLimit): Promise<DecodedLayer | undefined> {
  if (passes < 2 || (await fileCompression(layer)) !== "zstd") return undefined;
  const cap = limit ?? (await layerSizeLimit(dir));
  const file = join(dir, `decoded-${randomBytes(6).toString("hex")}.tar`);
  const remove = () => rm(file, { force: true });
  const hash = createHash("sha256");
  let written = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      written += chunk.length;
      if (written > cap.bytes) return done(overLimit(cap, "decodes"));
      hash.update(chunk);
      done(null, chunk);
    },
  });
  try {
    await pipeline(decompressed(createReadStream(layer), "zstd"), tap, createWriteStream(file, { mode: 0o600, flags: "wx" }));
  } catch (e) {
    await remove();
    if (e instanceof LayerTooLargeError || e instanceof NoRoomForLayerError) throw e;
    throw new Error(`${layer}: not a readable zstd file: ${(e as Error).message}`, { cause: e });
  }
  return { file, diffId: `sha256:${hash.digest("hex")}`, remove };
}
