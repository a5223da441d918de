// Replaces byte strings in a stream cut into arbitrary pieces (websocket frames, TCP reads),
// catching a match split across pieces by holding back a piece's end while it could be the
// start of a pattern, until more arrives or the stream ends. Only such an end is held, not a
// fixed (longest pattern - 1) bytes: a server-sent event or a prompt that ends a piece goes out
// at once unless it really ends like the start of a secret. A forbidden pattern anywhere stops
// the stream before any byte of it is released.
import { Transform, type TransformCallback } from "node:stream";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";
export interface Replacement {
  from: Buffer;
  to: Buffer;
}

export interface Forbidden {
  bytes: Buffer;
  /** What to say when it is found (e.g. the secret's name). */
  name: string;
}

export class ForbiddenBytesError extends EngineError {
  readonly kind: ErrorKind = "policy_refused";

  constructor(readonly forbidden: string) {
    super(`forbidden content: ${forbidden}`);
  }
}

export class StreamReplacer {
  private carry: Buffer = Buffer.alloc(0);
  private readonly patterns: Array<{ bytes: Buffer; to?: Buffer; name?: string }>;

  constructor(replacements: Replacement[], forbidden: Forbidden[] = []) {
    this.patterns = [
      ...forbidden.filter((f) => f.bytes.length).map((f) => ({ bytes: f.bytes, name: f.name })),
      ...replacements.filter((r) => r.from.length).map((r) => ({ bytes: r.from, to: r.to })),
    ];
  }

  get idle(): boolean {
    return this.patterns.length === 0;
  }

  /** The bytes that can be released after `chunk`; throws ForbiddenBytesError on a forbidden pattern. */
  push(chunk: Buffer): Buffer {
    return this.run(chunk, false);
  }

  /** End of the stream (or message): everything held back, replaced. */
  flush(): Buffer {
    return this.run(Buffer.alloc(0), true);
  }

  private run(chunk: Buffer, final: boolean): Buffer {
    if (this.idle) return chunk;
    const data = this.carry.length ? Buffer.concat([this.carry, chunk]) : chunk;
    const cut = final ? data.length : data.length - this.unfinished(data);
    const out: Buffer[] = [];
    // Each pattern's next occurrence at or after pos, searched for again only once a replacement
    // has moved pos past it: every pattern scans the data about once, however many matches (or
    // near-matches) the guest packs in. Searching afresh for every pattern after every match made
    // the work quadratic in the size of a piece.
    const next = this.patterns.map((p) => data.indexOf(p.bytes));
    let pos = 0;
    for (;;) {
      let first = -1;
      for (let j = 0; j < next.length; j++) {
        if (next[j]! >= 0 && next[j]! < pos) next[j] = data.indexOf(this.patterns[j]!.bytes, pos);
        // On a tie the earlier pattern wins: forbidden ones come first.
        if (next[j]! >= 0 && (first < 0 || next[j]! < next[first]!)) first = j;
      }
      const at = first < 0 ? -1 : next[first]!;
      // A match starting in the held-back tail is found again, whole, next time.
      if (first < 0 || at >= cut) break;
      const hit = this.patterns[first]!;
      if (!hit.to) {
        this.carry = Buffer.alloc(0);
        throw new ForbiddenBytesError(hit.name ?? "");
      }
      out.push(data.subarray(pos, at), hit.to);
      pos = at + hit.bytes.length;
    }
    const end = Math.max(pos, cut);
    out.push(data.subarray(pos, end));
    this.carry = Buffer.from(data.subarray(end));
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  /** How many bytes at the end of `data` could be the start of a pattern (the longest such end). */
  private unfinished(data: Buffer): number {
    let held = 0;
    for (const { bytes } of this.patterns) {
      // Candidate starts: the pattern's first byte, within (its length - 1) of the end; the
      // earliest one that fits is the longest end, and only one longer than `held` matters.
      for (let at = data.indexOf(bytes[0]!, Math.max(0, data.length - bytes.length + 1)); at >= 0; at = data.indexOf(bytes[0]!, at + 1)) {
        const n = data.length - at;
        if (n <= held) break;
        if (data.subarray(at).equals(bytes.subarray(0, n))) {
          held = n;
          break;
        }
      }
    }
    return held;
  }
}

/** Anything that replaces as bytes stream through: what may go out after each piece, and the rest at the end. */
export interface PieceReplacer {
  push(chunk: Buffer): Buffer;
  flush(): Buffer;
}

/** A replacer as a stream: each chunk through push, the end through flush. */
export class ReplacingStream extends Transform {
  constructor(private readonly replacer: PieceReplacer) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let out: Buffer;
    try {
      out = this.replacer.push(chunk);
    } catch (err) {
      return cb(err as Error);
    }
    cb(null, out.length ? out : undefined);
  }

  override _flush(cb: TransformCallback): void {
    const out = this.replacer.flush();
    cb(null, out.length ? out : undefined);
  }
}
