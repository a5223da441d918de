// Walks the frame structure of a zstd stream as its bytes go by, without decoding anything, so
// each frame's header is judged before the decoder sees it. A zstd decoder allocates the window a
// frame header asks for (fzstd: up to ~2 GiB, zero-filled) before producing a byte, so a layer of
// a few bytes could make the engine allocate gigabytes, and a layer of many tiny frames could make
// it do so over and over. Format: RFC 8878 (frames, skippable frames, block headers).
import { formatBytes } from "../byte-size.js";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";

/** The largest window accepted: what zstd's own decoder accepts by default (2^27). */
export const MAX_WINDOW = 128 * 1024 * 1024;
/** Encoders round a window up to a power of two, at least 1 KiB: never more is needed for a frame's declared content. */
const MIN_WINDOW = 1024;

export class ZstdLimitError extends EngineError {
  readonly kind: ErrorKind = "policy_refused";
}

const ZSTD_MAGIC = 0xfd2fb528;
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;

type State =
  | { at: "magic" }
  | { at: "header"; need: number }
  | { at: "skip"; left: number; then: "magic" | "block" | "checksum-or-magic" }
  | { at: "block" }
  | { at: "checksum" };

export class ZstdFrameGuard {
  private state: State = { at: "magic" };
  /** Header bytes being collected (a header can arrive split across pieces). */
  private pending: Buffer = Buffer.alloc(0);
  /** Offset in the compressed stream of the next byte fed. */
  private offset = 0;
  private frameStart = 0;
  private checksum = false;
  /** Sum of the windows of all frames so far, against what they decoded to (see budget()). */
  private windows = 0;
  private decoded = 0;

  constructor(private readonly maxWindow = MAX_WINDOW) {}

  /** The decoder produced `n` more bytes. */
  produced(n: number): void {
    this.decoded += n;
  }

  /** Looks at the next compressed bytes; throws ZstdLimitError before a frame that asks for too much. */
  feed(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      const s = this.state;
      if (s.at === "skip") {
        const n = Math.min(s.left, chunk.length - i);
        i += n;
        s.left -= n;
        if (s.left === 0) this.state = s.then === "block" ? { at: "block" } : s.then === "magic" ? { at: "magic" } : this.afterLastBlock();
        continue;
      }
      // Everything else is a short fixed-size piece: collect it whole first.
      const need = s.at === "magic" ? 4 : s.at === "header" ? s.need : s.at === "block" ? 3 : 4;
      const take = Math.min(need - this.pending.length, chunk.length - i);
      this.pending = Buffer.concat([this.pending, chunk.subarray(i, i + take)]);
      i += take;
      if (this.pending.length < need) break;
      const piece = this.pending;
      this.pending = Buffer.alloc(0);
      this.step(piece, this.offset + i - need);
    }
    this.offset += chunk.length;
  }

  private step(piece: Buffer, at: number): void {
    const s = this.state;
    if (s.at === "magic") {
      const magic = piece.readUInt32LE(0);
      if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) {
        this.state = { at: "header", need: 8 }; // magic again + 4-byte size, re-read below
        this.pending = piece;
        return;
      }
      // Anything else is for the decoder to refuse with its own error.
      if (magic !== ZSTD_MAGIC) return void (this.state = { at: "skip", left: Infinity, then: "magic" });
      this.frameStart = at;
      this.state = { at: "header", need: 5 };
      this.pending = piece;
      return;
    }
    if (s.at === "header") {
      if (piece.readUInt32LE(0) !== ZSTD_MAGIC) {
        // Skippable frame: its size says how much to pass over.
        const size = piece.readUInt32LE(4);
        this.state = size ? { at: "skip", left: size, then: "magic" } : { at: "magic" };
        return;
      }
      const fhd = piece[4]!;
      // The reserved bit set: not a frame the decoder will take; it says so in its own words.
      if (fhd & 0x08) return void (this.state = { at: "skip", left: Infinity, then: "magic" });
      const single = (fhd & 0x20) !== 0;
      const fcsFlag = fhd >> 6;
      const fcsBytes = fcsFlag === 0 ? (single ? 1 : 0) : 1 << fcsFlag;
      const dictBytes = [0, 1, 2, 4][fhd & 3]!;
      const full = 5 + (single ? 0 : 1) + dictBytes + fcsBytes;
      if (piece.length < full) {
        this.state = { at: "header", need: full };
        this.pending = piece;
        return;
      }
      this.checksum = (fhd & 0x04) !== 0;
      const fcsAt = 5 + (single ? 0 : 1) + dictBytes;
      const contentSize = fcsBytes === 0 ? undefined : readLE(piece, fcsAt, fcsBytes) + (fcsBytes === 2 ? 256 : 0);
      this.judge(windowOf(piece, single, contentSize), contentSize);
      this.state = { at: "block" };
      return;
    }
    if (s.at === "block") {
      const h = piece[0]! | (piece[1]! << 8) | (piece[2]! << 16);
      const last = (h & 1) === 1;
      const type = (h >> 1) & 3;
      const size = type === 1 ? 1 : h >>> 3; // an RLE block is one byte repeated
      const then = last ? "checksum-or-magic" : "block";
      if (type === 3) return void (this.state = { at: "skip", left: Infinity, then: "magic" }); // reserved: the decoder refuses it
      this.state = size ? { at: "skip", left: size, then } : last ? this.afterLastBlock() : { at: "block" };
      return;
    }
    // The frame's 4-byte checksum, done.
    this.state = { at: "magic" };
  }

  private afterLastBlock(): State {
    return this.checksum ? { at: "checksum" } : { at: "magic" };
  }

  private judge(window: number, contentSize: number | undefined): void {
    const where = `zstd frame at byte ${this.frameStart}`;
    if (window > this.maxWindow) {
      throw new ZstdLimitError(`${where} asks for a ${formatBytes(window)} window; at most ${formatBytes(this.maxWindow)} is accepted`);
    }
    // A frame that says how much it holds never needs a window beyond the power of two above that.
    if (contentSize !== undefined && window > Math.max(MIN_WINDOW, 2 ** Math.ceil(Math.log2(contentSize + 1)))) {
      throw new ZstdLimitError(`${where} asks for a ${formatBytes(window)} window for ${formatBytes(contentSize)} of content`);
    }
    // Each frame's window is allocated afresh: frames must decode to about as much as they ask
    // for, or thousands of tiny frames would each allocate (and zero) a big window.
    this.windows += window;
    if (this.windows > this.maxWindow + 2 * this.decoded) {
      throw new ZstdLimitError(`${where}: the frames so far asked for ${formatBytes(this.windows)} of windows but decoded to only ${formatBytes(this.decoded)}`);
    }
  }
}

function readLE(b: Buffer, at: number, n: number): number {
  let v = 0;
  for (let k = n - 1; k >= 0; k--) v = v * 256 + b[at + k]!;
  return v;
}

/** The window a frame header asks for: its window descriptor, or its content size in single-segment mode. */
function windowOf(header: Buffer, single: boolean, contentSize: number | undefined): number {
  if (single) return contentSize ?? 0;
  const wd = header[5]!;
  const base = 2 ** (10 + (wd >> 3));
  return base + (base / 8) * (wd & 7);
}
