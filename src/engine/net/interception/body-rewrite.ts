// The `after` rules' body replacements, streamed: literal find/replace applied in order (the
// second to the first one's output), over the whole body, or for server-sent events only over
// the value of each `data:` line. Nothing is buffered beyond what could still be the start of a
// match (StreamReplacer), and an SSE line's first five bytes: events still flow as they come.
import { Transform, type TransformCallback } from "node:stream";
import { ReplacingStream, StreamReplacer, type PieceReplacer } from "../stream-replace.js";
import type { BodyReplacement } from "./interceptor.js";

/** Replacements applied one after another, each on the previous one's output. */
class ReplacementChain implements PieceReplacer {
  private readonly steps: StreamReplacer[];

  constructor(replacements: BodyReplacement[]) {
    this.steps = replacements.map((r) => new StreamReplacer([{ from: Buffer.from(r.find), to: Buffer.from(r.replace) }]));
  }

  push(chunk: Buffer): Buffer {
    return this.steps.reduce((data, step) => (data.length ? step.push(data) : data), chunk);
  }

  /** End of the text: everything held back, replaced. */
  flush(): Buffer {
    let out = Buffer.alloc(0);
    for (const step of this.steps) out = Buffer.concat([step.push(out), step.flush()]);
    return out;
  }
}

/** A whole body held in memory (one a callback set), with the replacements applied. */
export function replaceInBuffer(body: Buffer, replacements: BodyReplacement[]): Buffer {
  const chain = new ReplacementChain(replacements);
  return Buffer.concat([chain.push(body), chain.flush()]);
}

/** Whole-body replacement. */
export class BodyRewrite extends ReplacingStream {
  constructor(replacements: BodyReplacement[]) {
    super(new ReplacementChain(replacements));
  }
}

const DATA = Buffer.from("data:");

/**
 * Replacement in the value of each `data:` line of an event stream (after "data:" and its
 * optional space); every other line, and the line ends (LF, CRLF or CR), pass unchanged.
 */
export class SseDataRewrite extends Transform {
  private readonly chain: ReplacementChain;
  /** Where the current line is: its first bytes not yet seen whole, a data value, or anything else. */
  private state: "start" | "afterData" | "data" | "other" = "start";
  private head = Buffer.alloc(0);

  constructor(replacements: BodyReplacement[]) {
    super();
    this.chain = new ReplacementChain(replacements);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const out: Buffer[] = [];
    let i = 0;
    while (i < chunk.length) {
      if (this.state === "start") {
        const need = DATA.length - this.head.length;
        const take = chunk.subarray(i, i + need);
        const eol = lineEnd(take);
        if (eol >= 0) {
          // A line shorter than "data:": passed on as it is.
          out.push(this.head, take.subarray(0, eol + 1));
          this.head = Buffer.alloc(0);
          i += eol + 1;
          continue;
        }
        this.head = Buffer.concat([this.head, take]);
        i += take.length;
        if (this.head.length < DATA.length) continue;
        out.push(this.head);
        this.state = this.head.equals(DATA) ? "afterData" : "other";
        this.head = Buffer.alloc(0);
        continue;
      }
      if (this.state === "afterData") {
        if (chunk[i] === 0x20) out.push(chunk.subarray(i, ++i));
        this.state = "data";
        continue;
      }
      const rest = chunk.subarray(i);
      const eol = lineEnd(rest);
      const body = eol >= 0 ? rest.subarray(0, eol) : rest;
      if (this.state === "data") out.push(this.chain.push(body));
      else out.push(body);
      if (eol < 0) break;
      if (this.state === "data") out.push(this.chain.flush());
      out.push(rest.subarray(eol, eol + 1));
      this.state = "start";
      i += eol + 1;
    }
    const data = Buffer.concat(out);
    cb(null, data.length ? data : undefined);
  }

  override _flush(cb: TransformCallback): void {
    const tail = Buffer.concat([this.head, this.state === "data" ? this.chain.flush() : Buffer.alloc(0)]);
    cb(null, tail.length ? tail : undefined);
  }
}

function lineEnd(b: Buffer): number {
  const lf = b.indexOf(10);
  const cr = b.indexOf(13);
  return lf < 0 ? cr : cr < 0 ? lf : Math.min(lf, cr);
}
