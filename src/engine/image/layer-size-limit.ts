// How many bytes a layer may decode to on the store's disk. zstd packs ~32000:1, so a small blob
// can decode to far more than the disk holds; the decoded tar is written before its diff_id is
// checked, so the bound has to hold while writing. Two limits, the smaller applies:
// - MATCHLOCK_MAX_LAYER_BYTES (default 64 GiB): no sane layer is bigger, whatever the disk;
// - the disk's free space when decoding starts, less FREE_MARGIN: a layer that cannot fit fails
//   cleanly instead of filling the disk under the rest of the engine (and the host).
// The free space is read once, not tracked: other writers meanwhile are not this layer's doing.
import { statfs } from "node:fs/promises";
import { formatBytes } from "../byte-size.js";
import { ZstdLimitError } from "./zstd-frames.js";
import { settings } from "../../settings/settings.js";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";

export const DEFAULT_MAX_LAYER_BYTES = 64 * 2 ** 30;
/** What a tar entry costs beyond its data: one header block for its inode, so a flood of empty files counts too. */
export const ENTRY_OVERHEAD = 512;
/** Left free on the store's disk whatever a layer needs. */
export const FREE_MARGIN = 256 * 2 ** 20;

const UNITS: Record<string, number> = { "": 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** MATCHLOCK_MAX_LAYER_BYTES: bytes, or with a K, M, G or T suffix (binary); a clear error when it is something else. */
export function maxLayerBytes(value = settings.maxLayerBytes.read()): number {
  if (value === undefined || value === "") return DEFAULT_MAX_LAYER_BYTES;
  const m = /^(\d+)([KMGT]?)(?:i?B)?$/i.exec(value.trim());
  const bytes = m ? Number(m[1]) * UNITS[m[2]!.toUpperCase()]! : NaN;
  if (!Number.isSafeInteger(bytes) || bytes < 1) {
    throw new Error(`MATCHLOCK_MAX_LAYER_BYTES=${JSON.stringify(value)} is not a size: give bytes, or a number with a K, M, G or T suffix (e.g. 64G)`);
  }
  return bytes;
}

export interface LayerSizeLimit {
  bytes: number;
  /** Why it is this much, for the error. */
  why: string;
  /** The disk's free space set it, not MATCHLOCK_MAX_LAYER_BYTES: going over is no fault of the image. */
  noRoom?: boolean;
}

/** A layer bigger than MATCHLOCK_MAX_LAYER_BYTES: the image's fault, refused like a zstd bomb. */
export class LayerTooLargeError extends ZstdLimitError {
  override readonly kind: ErrorKind = "policy_refused";
}

/** A layer that does not fit the disk's free space: the disk's state, nothing wrong with the image. */
export class NoRoomForLayerError extends EngineError {
  readonly kind: ErrorKind = "failed";
}

/** The error for a layer (or `subject`) that grew past `limit` ("it decodes to more than ..."). */
export function overLimit(limit: LayerSizeLimit, what: string, subject = "it"): Error {
  const message = `${subject} ${what} to more than ${formatBytes(limit.bytes)}: ${limit.why}`;
  return limit.noRoom ? new NoRoomForLayerError(message) : new LayerTooLargeError(message);
}

/** The limit for a layer decoded into `dir`. */
export async function layerSizeLimit(dir: string, max = maxLayerBytes()): Promise<LayerSizeLimit> {
  const fs = await statfs(dir);
  const room = fs.bavail * fs.bsize - FREE_MARGIN;
  if (room < max) return { bytes: Math.max(0, room), why: `${dir} has room for only ${formatBytes(Math.max(0, room))} (keeping ${formatBytes(FREE_MARGIN)} free)`, noRoom: true };
  return { bytes: max, why: `at most ${formatBytes(max)} is accepted (MATCHLOCK_MAX_LAYER_BYTES)` };
}
