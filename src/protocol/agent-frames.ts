// Codec for the engine <-> agent channel. The byte layout is specified in
// guest/agent/PROTOCOL.md; this file is its only TypeScript implementation.
import { EngineError, type ErrorKind } from "./errors.js";

export const FrameType = {
  EXEC: 0x01,
  SIGNAL: 0x02,
  WRITE_OPEN: 0x03,
  WRITE_DATA: 0x04,
  READ: 0x05,
  LIST: 0x06,
  PING: 0x07,
  WRITE_OPEN_TEMP: 0x08,
  CANCEL: 0x09,
  READ_STREAM: 0x0a,
  CREDIT: 0x0b,
  EXEC_PIPE: 0x20,
  EXEC_TTY: 0x21,
  STDIN: 0x22,
  STDIN_EOF: 0x23,
  RESIZE: 0x24,
  STDOUT: 0x10,
  STDERR: 0x11,
  EXIT: 0x12,
  OK: 0x13,
  ENTRIES: 0x14,
  ERROR: 0x15,
  READY: 0x16,
  STDIN_ACK: 0x28,
  STARTED: 0x29,
  // Port forwarding: engine -> agent 0x30-0x37, agent -> engine 0x38-0x3f (see port-frames.ts).
  PORT_CONNECT: 0x30,
  PORT_DATA: 0x31,
  PORT_CREDIT: 0x32,
  PORT_SHUTDOWN: 0x33,
  PORT_CLOSE: 0x34,
  PORT_CONNECTED: 0x38,
  PORT_DATA_OUT: 0x39,
  PORT_CREDIT_OUT: 0x3a,
  PORT_EOF: 0x3b,
  PORT_CLOSED: 0x3c,
  REMOVE: 0x40,
  MKDIR: 0x41,
  RENAME: 0x42,
  STAT: 0x43,
  STAT_RESULT: 0x48,
  // File system interception (src/engine/vfs/interception): engine -> agent 0x50, agent -> engine 0x58.
  VFS_SETUP: 0x50,
  FILE_EVENT: 0x58,
} as const;
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];

const AGENT_TO_ENGINE = new Set<number>([
  FrameType.STDOUT, FrameType.STDERR, FrameType.EXIT, FrameType.OK,
  FrameType.ENTRIES, FrameType.ERROR, FrameType.READY, FrameType.STDIN_ACK, FrameType.STARTED, FrameType.STAT_RESULT, FrameType.FILE_EVENT,
  FrameType.PORT_CONNECTED, FrameType.PORT_DATA_OUT, FrameType.PORT_CREDIT_OUT, FrameType.PORT_EOF, FrameType.PORT_CLOSED,
]);

export const HEADER_BYTES = 9;
export const MAX_PAYLOAD = 1024 * 1024;
/** Largest chunk we put in one WRITE_DATA frame. */
export const DATA_CHUNK = 256 * 1024;
/**
 * Largest STDOUT frame the agent sends for a file read: its read size on both channels (fewer
 * syscall stops per MB under gVisor's ptrace; the engine's read credit counts such chunks).
 */
export const READ_CHUNK = 256 * 1024;

/** STDIN bytes an exec may have in flight, sent and not yet acknowledged by STDIN_ACK (the agent's buffer). */
export const STDIN_WINDOW = 256 * 1024;
/** Largest STDIN frame we send. */
export const STDIN_CHUNK = 64 * 1024;

/** A 4-byte big-endian unsigned payload (STDIN_ACK, STARTED). */
export function decodeUint32(payload: Buffer, what: string): number {
  if (payload.length !== 4) throw new AgentProtocolError(`${what} payload must be 4 bytes, got ${payload.length}`);
  return payload.readUInt32BE(0);
}

export interface Frame {
  type: number;
  id: number;
  payload: Buffer;
}

/** Writes a frame's 9 header bytes at the start of `into`. */
function writeHeader(into: Buffer, type: FrameTypeCode, id: number, payloadBytes: number): void {
  if (payloadBytes > MAX_PAYLOAD) throw new RangeError(`frame payload ${payloadBytes} exceeds ${MAX_PAYLOAD}`);
  into.writeUInt8(type, 0);
  into.writeUInt32BE(id >>> 0, 1);
  into.writeUInt32BE(payloadBytes, 5);
}

/** The header of a frame whose payload is written separately (big payloads, uncopied). */
export function encodeFrameHeader(type: FrameTypeCode, id: number, payloadBytes: number): Buffer {
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  writeHeader(header, type, id, payloadBytes);
  return header;
}

export function encodeFrame(type: FrameTypeCode, id: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  // One buffer for header and payload: frames are written on every exec's round trip.
  const frame = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  writeHeader(frame, type, id, payload.length);
  payload.copy(frame, HEADER_BYTES);
  return frame;
}

/** NUL-terminated strings, the payload encoding of EXEC, WRITE_OPEN, READ and LIST. */
export function encodeStrings(fields: readonly string[]): Buffer {
  for (const f of fields) {
    if (f.includes("\0")) throw new RangeError("strings sent to the agent must not contain NUL bytes");
  }
  return Buffer.from(fields.map((f) => f + "\0").join(""), "utf8");
}

export function decodeStrings(payload: Buffer): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < payload.length; i++) {
    if (payload[i] === 0) {
      out.push(payload.subarray(start, i).toString("utf8"));
      start = i + 1;
    }
  }
  return out;
}

export interface ExitStatus {
  /** 0-255, or -1 when the process was killed by a signal. */
  code: number;
  signal: number;
  /** The agent saw the kernel's OOM killer kill it (EXIT flag bit 0). */
  outOfMemory: boolean;
}

const EXIT_FLAG_OOM = 1;

/** 8 bytes (code, signal), or 12 with a flags word (agents that report OOM kills). */
export function decodeExit(payload: Buffer): ExitStatus {
  if (payload.length !== 8 && payload.length !== 12) throw new AgentProtocolError(`EXIT payload must be 8 or 12 bytes, got ${payload.length}`);
  const flags = payload.length === 12 ? payload.readUInt32BE(8) : 0;
  return { code: payload.readInt32BE(0), signal: payload.readInt32BE(4), outOfMemory: (flags & EXIT_FLAG_OOM) !== 0 };
}

/** What the agent reports of a file (ENTRIES records, STAT_RESULT), from lstat. */
export interface FileStat {
  size: number;
  /** POSIX st_mode */
  mode: number;
  /** The modification time, in whole milliseconds since the epoch; undefined when it is out of a Date's range. */
  mtimeMs: number | undefined;
  /** Its nanoseconds within the second (0-999999999), for a precise RFC 3339 form. */
  mtimeNs: number;
}

export interface DirEntry extends FileStat {
  name: string;
}

const STAT_FIELDS = 4;
/** Date's range: 8.64e15 ms either side of the epoch. */
const MAX_DATE_SECONDS = 8.64e12;

/** size, mode, mtime seconds and nanoseconds, as the agent's records carry them (PROTOCOL.md). */
function decodeStatFields(fields: readonly string[], at: number): FileStat {
  const [size, mode, sec, ns] = fields.slice(at, at + STAT_FIELDS).map((f) => (/^-?\d{1,20}$/.test(f) ? Number(f) : NaN)) as [number, number, number, number];
  if (!Number.isSafeInteger(size) || size < 0 || !Number.isSafeInteger(mode) || mode < 0 || Number.isNaN(sec) || !Number.isInteger(ns) || ns < 0 || ns > 999_999_999) {
    throw new AgentProtocolError("a file record from the sandbox has a bad size, mode or time");
  }
  // A guest may set any time a file system holds; one a Date cannot show is reported as unknown.
  const mtimeMs = Math.abs(sec) <= MAX_DATE_SECONDS ? sec * 1000 + Math.floor(ns / 1e6) : undefined;
  return { size, mode, mtimeMs, mtimeNs: ns };
}

export function decodeStat(payload: Buffer): FileStat {
  const fields = decodeStrings(payload);
  if (fields.length !== STAT_FIELDS) throw new AgentProtocolError("STAT_RESULT payload is not one size/mode/mtime record");
  return decodeStatFields(fields, 0);
}

export function decodeEntries(payload: Buffer): DirEntry[] {
  const fields = decodeStrings(payload);
  const width = 1 + STAT_FIELDS;
  if (fields.length % width !== 0) throw new AgentProtocolError("ENTRIES payload is not a list of name/size/mode/mtime records");
  const entries: DirEntry[] = [];
  for (let i = 0; i < fields.length; i += width) {
    const name = fields[i]!;
    // Names reach SDK users who join them onto paths: a name is one path component.
    if (name === "" || name === "." || name === ".." || name.includes("/")) {
      throw new AgentProtocolError(`ENTRIES record has an invalid name ${JSON.stringify(name)}`);
    }
    entries.push({ name, ...decodeStatFields(fields, i + 1) });
  }
  return entries;
}

/** The guest is hostile: anything malformed coming from it is reported as this error. */
export class AgentProtocolError extends EngineError {
  readonly kind: ErrorKind = "sandbox_lost";
}

/**
 * Incremental decoder for frames coming *from the agent*. Rejects oversized frames and frame
 * types the agent may not send, so a hostile guest cannot make the engine buffer without bound.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  push(data: Buffer): Frame[] {
    this.chunks.push(data);
    this.buffered += data.length;
    const frames: Frame[] = [];
    while (this.buffered >= HEADER_BYTES) {
      const head = this.peek(HEADER_BYTES);
      const type = head.readUInt8(0);
      const id = head.readUInt32BE(1);
      const len = head.readUInt32BE(5);
      if (!AGENT_TO_ENGINE.has(type)) throw new AgentProtocolError(`unexpected frame type 0x${type.toString(16)} from the sandbox`);
      if (len > MAX_PAYLOAD) throw new AgentProtocolError(`frame of ${len} bytes from the sandbox exceeds the ${MAX_PAYLOAD}-byte limit`);
      if (this.buffered < HEADER_BYTES + len) break;
      const whole = this.take(HEADER_BYTES + len);
      frames.push({ type, id, payload: whole.subarray(HEADER_BYTES) });
    }
    return frames;
  }

  /** The next `n` bytes (n is a header's size: joining the chunks for it is cheap). */
  private peek(n: number): Buffer {
    let count = 0;
    for (let have = 0; have < n; count++) have += this.chunks[count]!.length;
    if (count > 1) this.chunks.unshift(Buffer.concat(this.chunks.splice(0, count)));
    return this.chunks[0]!.subarray(0, n);
  }

  /**
   * The next `n` buffered bytes, copied once into a buffer of their own (a frame must not pin the
   * larger read buffers it came in; big exec output frames span several of them).
   */
  private take(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    let whole = 0; // chunks used up, dropped in one splice: shift() per chunk is quadratic
    while (filled < n) {
      const chunk = this.chunks[whole]!;
      const used = Math.min(chunk.length, n - filled);
      chunk.copy(out, filled, 0, used);
      filled += used;
      if (used < chunk.length) this.chunks[whole] = chunk.subarray(used);
      else whole++;
    }
    this.chunks.splice(0, whole);
    this.buffered -= n;
    return out;
  }
}
