// Rewrites one direction of a websocket connection frame by frame (RFC 6455 section 5), so the
// proxy can put secrets into what the guest sends and take them out of what it receives.
// Written for streaming rather than taken from a websocket library: libraries reassemble whole
// messages in memory, while a proxy must pass a 100 MB message through as it arrives. Data
// payloads are unmasked and run through a StreamReplacer per message (a match split across
// fragments is caught); what comes out is sent as fresh fragments of the same message (an
// intermediary may re-fragment, 5.4), each with a header for its new length and, toward the
// server, a new mask. Control frames are rewritten whole. Extensions are refused: the proxy
// strips the client's offer, so RSV bits mean something it cannot read.
import { randomBytes } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { StreamReplacer, type Forbidden, type Replacement } from "./stream-replace.js";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";

export class WebSocketProtocolError extends EngineError {
  readonly kind: ErrorKind = "policy_refused";
}

export interface FrameRewriteOptions {
  /** Mask the frames sent on (the client-to-server direction must be masked). */
  mask: boolean;
  replacements: Replacement[];
  /** Patterns that end the connection (ForbiddenBytesError) before any of their bytes are sent. */
  forbidden?: Forbidden[];
}

interface FrameHeader {
  fin: boolean;
  opcode: number;
  maskKey: Buffer | undefined;
  length: number;
}

const CONTINUATION = 0x0;
const MAX_CONTROL_PAYLOAD = 125;

export class WebSocketFrameRewriter extends Transform {
  private input: Buffer = Buffer.alloc(0);
  private frame: (FrameHeader & { done: number }) | undefined;
  /** The data message in progress: its opcode, and whether a fragment of it went out. */
  private message: { opcode: number; started: boolean; replacer: StreamReplacer } | undefined;

  constructor(private readonly opts: FrameRewriteOptions) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.input = this.input.length ? Buffer.concat([this.input, chunk]) : chunk;
    try {
      this.drain();
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    // A connection may end mid-frame (the peer went away): whatever is left is dropped.
    cb();
  }

  private drain(): void {
    for (;;) {
      if (!this.frame) {
        const parsed = parseHeader(this.input);
        if (!parsed) return;
        this.input = this.input.subarray(parsed.size);
        this.frame = { ...parsed.header, done: 0 };
        this.check(this.frame);
      }
      const f = this.frame;
      if (f.opcode & 0x8) {
        // Control frame: small, never fragmented; rewritten whole.
        if (this.input.length < f.length) return;
        const payload = unmask(Buffer.from(this.input.subarray(0, f.length)), f.maskKey, 0);
        this.input = this.input.subarray(f.length);
        this.frame = undefined;
        const r = new StreamReplacer(this.opts.replacements, this.opts.forbidden);
        const out = Buffer.concat([r.push(payload), r.flush()]);
        if (out.length > MAX_CONTROL_PAYLOAD) throw new WebSocketProtocolError("a control frame grew past 125 bytes");
        this.emitFrame(true, f.opcode, out);
        continue;
      }
      const take = Math.min(f.length - f.done, this.input.length);
      const payload = unmask(Buffer.from(this.input.subarray(0, take)), f.maskKey, f.done);
      this.input = this.input.subarray(take);
      f.done += take;
      const frameDone = f.done === f.length;
      const m = this.message!;
      let out = m.replacer.push(payload);
      const last = frameDone && f.fin;
      if (last) out = Buffer.concat([out, m.replacer.flush()]);
      if (out.length || last) {
        this.emitFrame(last, m.started ? CONTINUATION : m.opcode, out);
        m.started = true;
      }
      if (frameDone) this.frame = undefined;
      if (last) this.message = undefined;
      if (!frameDone) return; // wait for the rest of this frame's payload
    }
  }

  private check(f: FrameHeader): void {
    if (f.opcode & 0x8) {
      if (!f.fin || f.length > MAX_CONTROL_PAYLOAD) throw new WebSocketProtocolError("invalid control frame");
      return;
    }
    if (f.opcode === CONTINUATION) {
      if (!this.message) throw new WebSocketProtocolError("continuation frame without a message");
    } else {
      if (this.message) throw new WebSocketProtocolError("new message before the last one ended");
      if (f.opcode !== 0x1 && f.opcode !== 0x2) throw new WebSocketProtocolError(`unknown opcode ${f.opcode}`);
      this.message = { opcode: f.opcode, started: false, replacer: new StreamReplacer(this.opts.replacements, this.opts.forbidden) };
    }
  }

  private emitFrame(fin: boolean, opcode: number, payload: Buffer): void {
    const key = this.opts.mask ? randomBytes(4) : undefined;
    this.push(Buffer.concat([encodeHeader(fin, opcode, payload.length, key), key ? unmask(Buffer.from(payload), key, 0) : payload]));
  }
}

/** The header at the start of `buf`, or undefined while it is incomplete. */
export function parseHeader(buf: Buffer): { header: FrameHeader; size: number } | undefined {
  if (buf.length < 2) return undefined;
  const b0 = buf[0]!;
  const b1 = buf[1]!;
  if (b0 & 0x70) throw new WebSocketProtocolError("frame with RSV bits set (a websocket extension the proxy did not negotiate)");
  let length = b1 & 0x7f;
  let size = 2;
  if (length === 126) {
    if (buf.length < 4) return undefined;
    length = buf.readUInt16BE(2);
    size = 4;
  } else if (length === 127) {
    if (buf.length < 10) return undefined;
    const big = buf.readBigUInt64BE(2);
    if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new WebSocketProtocolError("frame longer than 2^53 bytes");
    length = Number(big);
    size = 10;
  }
  let maskKey: Buffer | undefined;
  if (b1 & 0x80) {
    if (buf.length < size + 4) return undefined;
    maskKey = Buffer.from(buf.subarray(size, size + 4));
    size += 4;
  }
  return { header: { fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, maskKey, length }, size };
}

export function encodeHeader(fin: boolean, opcode: number, length: number, maskKey: Buffer | undefined): Buffer {
  const ext = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const h = Buffer.alloc(2 + ext + (maskKey ? 4 : 0));
  h[0] = (fin ? 0x80 : 0) | opcode;
  h[1] = (maskKey ? 0x80 : 0) | (ext === 0 ? length : ext === 2 ? 126 : 127);
  if (ext === 2) h.writeUInt16BE(length, 2);
  if (ext === 8) h.writeBigUInt64BE(BigInt(length), 2);
  if (maskKey) maskKey.copy(h, 2 + ext);
  return h;
}

/** XORs `data` in place with the mask, `offset` bytes into the payload; (un)masking is symmetric. */
export function unmask(data: Buffer, key: Buffer | undefined, offset: number): Buffer {
  if (!key) return data;
  for (let i = 0; i < data.length; i++) data[i] = data[i]! ^ key[(offset + i) & 3]!;
  return data;
}
