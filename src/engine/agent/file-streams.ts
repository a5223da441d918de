// Streamed file transfers over the agent channel (WRITE_OPEN_TEMP / READ_STREAM, see
// guest/agent/PROTOCOL.md). Both hold a bounded amount of data on the engine side:
// - a write waits for the channel to drain after every frame, so the agent's pace limits it;
// - a read grants the agent credit for a few chunks at a time, so a client that reads slowly
//   stalls only its own read, not the whole channel (other execs and transfers keep going).
import {
  DATA_CHUNK, FrameType, READ_CHUNK, encodeStrings, type Frame,
} from "../../protocol/agent-frames.js";
import { AgentOpError, type AgentConnection, type Completion } from "./connection.js";

/**
 * Chunks (of at most READ_CHUNK bytes) a read may have on its way to us: its engine-side buffer
 * bound, 2 MiB. Twice the 1 MiB a JSON-RPC chunk request takes, so the agent reads the next
 * MiB while the engine encodes and sends the last one.
 */
export const READ_WINDOW_CHUNKS = 8;

/** Settles with the operation's final result and remembers whether it failed, synchronously visible. */
function watch<T>(result: Promise<T>): { failure: () => Error | undefined } {
  let failure: Error | undefined;
  result.catch((err: Error) => (failure = err));
  return { failure: () => failure };
}

/**
 * A file being written into a temporary file next to its target, renamed over the target by
 * commit(). Nothing is visible at the target path before that; cancel() removes the temporary file.
 */
export class AgentWriteStream {
  private bytes = 0;
  private ended = false;

  private constructor(
    private readonly conn: AgentConnection,
    private readonly id: number,
    private readonly result: Promise<void>,
    private readonly state: { failure: () => Error | undefined },
  ) {}

  /** Opens the write; an open failure (EISDIR, EROFS, EACCES, ...) rejects here, not at the end. */
  static async open(conn: AgentConnection, path: string, mode: number): Promise<AgentWriteStream> {
    const { id, result } = await conn.startOp<void>(FrameType.WRITE_OPEN_TEMP, encodeStrings([path, String(mode)]), (frame, done) => {
      if (frame.type === FrameType.OK) done.resolve();
      else done.unexpected();
    });
    const state = watch(result);
    // The agent handles frames in order: once the ping is answered, a failed open has been reported.
    await conn.ping();
    const failure = state.failure();
    if (failure) throw failure;
    return new AgentWriteStream(conn, id, result, state);
  }

  get size(): number {
    return this.bytes;
  }

  /**
   * Sends `data`, resolving once the channel has taken it. Rejects if the write already failed.
   * All its frames are queued at once and drained together: waiting for each frame to drain
   * let the channel run dry between frames. What is queued is bounded by `data` (one chunk).
   */
  async write(data: Buffer): Promise<void> {
    this.check();
    const sends: Array<Promise<void>> = [];
    for (let off = 0; off < data.length; off += DATA_CHUNK) {
      sends.push(this.conn.sendFrame(FrameType.WRITE_DATA, this.id, data.subarray(off, off + DATA_CHUNK)));
    }
    await Promise.all(sends);
    this.check();
    this.bytes += data.length;
  }

  /** Ends the write: the agent closes the file and renames it into place. */
  async commit(): Promise<void> {
    this.check();
    this.ended = true;
    await this.conn.sendFrame(FrameType.WRITE_DATA, this.id, Buffer.alloc(0));
    await this.result;
  }

  /** Drops the write; the agent removes the temporary file. Safe to call at any time. */
  cancel(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.state.failure() || this.conn.lost) return;
    this.conn.sendFrame(FrameType.CANCEL, this.id, Buffer.alloc(0)).catch(() => {});
  }

  private check(): void {
    const failure = this.state.failure() ?? this.conn.lost;
    if (failure) throw failure;
    if (this.ended) throw new AgentOpError("the write has already ended");
  }
}

/** A file read in chunks the consumer asks for; at most READ_WINDOW_CHUNKS are buffered here. */
export class AgentReadStream {
  private readonly queue: Buffer[] = [];
  private eof = false;
  private ended = false;
  /** Chunks the agent may still send without being asked. */
  private credit = 0;
  private wake: (() => void) | undefined;

  private constructor(private readonly conn: AgentConnection, private id = 0, private state = { failure: (): Error | undefined => undefined }) {}

  /** Opens the file; a missing path, a directory or a non-regular file rejects here. */
  static async open(conn: AgentConnection, path: string): Promise<AgentReadStream> {
    const stream = new AgentReadStream(conn);
    const { id, result } = await conn.startOp<void>(FrameType.READ_STREAM, encodeStrings([path]), (frame, done) => stream.onFrame(frame, done));
    stream.id = id;
    stream.state = watch(result);
    result.then(() => stream.notify(), () => stream.notify());
    await conn.ping();
    const failure = stream.state.failure();
    if (failure) throw failure;
    await stream.grant(READ_WINDOW_CHUNKS);
    return stream;
  }

  /** File data received and not yet taken by next(): at most READ_WINDOW_CHUNKS × READ_CHUNK. */
  get bufferedBytes(): number {
    return this.queue.reduce((n, b) => n + b.length, 0);
  }

  /**
   * Returns the next bytes of the file (at most about `max`, at least one chunk), or `eof` true
   * with what is left. Waits until `max` bytes are here, the agent has used all its credit, or
   * the file ended: answering with whatever one chunk had arrived made every JSON-RPC chunk
   * request carry 64 KiB instead of `max`, and the round trips, not the bytes, set the pace.
   */
  async next(max: number): Promise<{ data: Buffer; eof: boolean }> {
    for (;;) {
      const failure = this.state.failure() ?? this.conn.lost;
      if (failure) throw failure;
      if (this.ended) throw new AgentOpError("the read has already ended");
      if (this.eof || (this.queue.length > 0 && (this.credit === 0 || this.bufferedBytes >= max))) break;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    const parts: Buffer[] = [];
    let size = 0;
    while (this.queue.length > 0 && (parts.length === 0 || size + this.queue[0]!.length <= max)) {
      const part = this.queue.shift()!;
      parts.push(part);
      size += part.length;
    }
    if (!this.eof && parts.length > 0) await this.grant(parts.length);
    return { data: parts.length === 1 ? parts[0]! : Buffer.concat(parts, size), eof: this.eof && this.queue.length === 0 };
  }

  /** Stops the read early (the agent closes the file). Safe to call at any time. */
  cancel(): void {
    if (this.ended) return;
    this.ended = true;
    this.queue.length = 0;
    this.notify();
    if (this.eof || this.state.failure() || this.conn.lost) return;
    this.conn.sendFrame(FrameType.CANCEL, this.id, Buffer.alloc(0)).catch(() => {});
  }

  private onFrame(frame: Frame, done: Completion<void>): void {
    if (frame.type === FrameType.STDOUT) {
      // The guest is hostile: more than it was allowed, or bigger chunks, breaks the protocol.
      if (this.credit === 0 || frame.payload.length > READ_CHUNK) return done.unexpected();
      this.credit--;
      if (!this.ended) this.queue.push(frame.payload);
      this.notify();
    } else if (frame.type === FrameType.OK) {
      this.eof = true;
      done.resolve();
    } else {
      done.unexpected();
    }
  }

  private async grant(chunks: number): Promise<void> {
    this.credit += chunks;
    const payload = Buffer.alloc(4);
    payload.writeUInt32BE(chunks);
    await this.conn.sendFrame(FrameType.CREDIT, this.id, payload);
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
