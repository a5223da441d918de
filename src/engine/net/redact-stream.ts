// Puts placeholders back where an upstream response echoes a secret's real value (e.g. an API
// that reflects the Authorization header), so the value never reaches the guest. Streams: a
// match split across chunks is caught by holding back the last (longest value - 1) bytes.
import { Transform, type TransformCallback } from "node:stream";

export interface Redaction {
  value: Buffer;
  placeholder: Buffer;
}

export class RedactStream extends Transform {
  private carry: Buffer = Buffer.alloc(0);
  private readonly keep: number;

  constructor(private readonly redactions: Redaction[]) {
    super();
    this.keep = Math.max(0, ...redactions.map((r) => r.value.length - 1));
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const data = redact(Buffer.concat([this.carry, chunk]), this.redactions);
    const cut = Math.max(0, data.length - this.keep);
    this.carry = data.subarray(cut);
    cb(null, data.subarray(0, cut));
  }

  override _flush(cb: TransformCallback): void {
    cb(null, redact(this.carry, this.redactions));
  }
}

export function redact(data: Buffer, redactions: Redaction[]): Buffer {
  let out = data;
  for (const r of redactions) {
    if (r.value.length === 0 || out.indexOf(r.value) < 0) continue;
    const parts: Buffer[] = [];
    let from = 0;
    for (let at = out.indexOf(r.value); at >= 0; at = out.indexOf(r.value, from)) {
      parts.push(out.subarray(from, at), r.placeholder);
      from = at + r.value.length;
    }
    parts.push(out.subarray(from));
    out = Buffer.concat(parts);
  }
  return out;
}
