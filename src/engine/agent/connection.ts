// Host side of the agent channel: many concurrent operations multiplexed over one byte stream.
// Everything read from the stream comes from inside the sandbox and is treated as hostile:
// malformed frames end the connection (see FrameDecoder), unknown ids are ignored.
import type { Readable, Writable } from "node:stream";
import type { CancelSwitch } from "./cancel-switch.js";
import type { ExecInput } from "./exec-input.js";
import {
  AgentProtocolError, DATA_CHUNK, FrameDecoder, FrameType, decodeEntries, decodeExit,
  encodeFrame, encodeFrameHeader, encodeStrings, type DirEntry, type ExitStatus, type Frame, type FrameTypeCode,
} from "../../protocol/agent-frames.js";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";

/** The agent reported that an operation failed (bad cwd, ENOENT, EROFS, ...). */
export class AgentOpError extends EngineError {
  readonly kind: ErrorKind = "failed";
}

/** The channel to the sandbox is gone: the sandbox died, was stopped, or broke the protocol. */
export class SandboxLostError extends EngineError {
  readonly kind: ErrorKind = "sandbox_lost";
}

/** The sandbox died because it ran out of memory (the host's OOM killer killed all of it). */
export class OutOfMemoryError extends SandboxLostError {
  override readonly kind: ErrorKind = "out_of_memory";
}

/** The sandbox reached the timeout it was created with, and was stopped. */
export class SandboxTimedOutError extends SandboxLostError {
  override readonly kind: ErrorKind = "timeout";
}

/**
 * Says why the channel closed when the backend knows better than "it closed" (e.g. the
 * sandbox was OOM-killed); undefined for the generic reason.
 */
export type LossExplainer = () => Promise<Error | undefined>;

export interface ExecRequest {
  command: string;
  cwd: string;
  /** "" for root, else numeric "uid" or "uid:gid". */
  user: string;
  /** NAME=value entries; freeze the array to have it encoded once (see encodedEnv). */
  env: readonly string[];
}

/**
 * Receives an exec's output. Returning a promise says "slow down": the connection stops reading
 * from the sandbox until it settles, so the agent blocks instead of the engine buffering.
 */
export interface ExecSink {
  stdout(data: Buffer): void | Promise<unknown>;
  stderr(data: Buffer): void | Promise<unknown>;
}

interface PendingOp {
  onFrame(frame: Frame): void | Promise<unknown>;
  fail(err: Error): void;
}

/** A directory listing from the guest is bounded: a hostile guest could send entries forever. */
export const MAX_LIST_ENTRIES = 100_000;

const MAX_ID = 0xffffffff;

/** Payloads from this size on are written uncopied (see corked()); smaller frames are one buffer. */
const UNCOPIED_PAYLOAD = 64 * 1024;

export class AgentConnection {
  private readonly ops = new Map<number, PendingOp>();
  private nextId = 1;
  private lostError: Error | undefined;
  private readonly decoder = new FrameDecoder();
  readonly ready: Promise<string>;
  private resolveReady!: (version: string) => void;
  private rejectReady!: (err: Error) => void;
  private readonly lostListeners: Array<(err: Error) => void> = [];

  private pausedBy = 0;
  /** The one wait for the pipe to drain, while it is full (see drained()). */
  private draining: Promise<void> | undefined;
  private envMemo: { env: readonly string[]; encoded: Buffer } | undefined;

  constructor(private readonly toAgent: Writable, private readonly fromAgent: Readable, private readonly explainLoss?: LossExplainer) {
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {}); // observed through waitReady(); avoid an unhandled rejection here
    fromAgent.on("data", (chunk: Buffer) => this.onData(chunk));
    fromAgent.on("end", () => void this.loseExplained(new SandboxLostError("the sandbox closed its agent channel")));
    fromAgent.on("error", (err) => void this.loseExplained(new SandboxLostError(`agent channel read failed: ${err.message}`)));
    toAgent.on("error", (err) => this.lose(new SandboxLostError(`agent channel write failed: ${err.message}`)));
  }

  get lost(): Error | undefined {
    return this.lostError;
  }

  /** Receives the payload of each FILE_EVENT frame (the intercepting file system's events), in order. */
  onFileEvent: ((payload: Buffer) => void | Promise<void>) | undefined;

  onLost(listener: (err: Error) => void): void {
    if (this.lostError) listener(this.lostError);
    else this.lostListeners.push(listener);
  }

  /** Marks the channel dead and fails every pending operation with `err`. Idempotent. */
  lose(err: Error): void {
    if (this.lostError) return;
    this.lostError = err;
    this.rejectReady(err);
    for (const op of this.ops.values()) op.fail(err);
    this.ops.clear();
    for (const l of this.lostListeners) l(err);
    this.toAgent.destroy();
  }

  /**
   * Like lose(), but the backend's explanation of the loss wins over `fallback`. Only a death
   * nobody asked for is explained: after shutdown() or lose() the cause is known, and explaining
   * can be costly (gVisor may scan the kernel log for an OOM kill).
   */
  async loseExplained(fallback: Error): Promise<void> {
    const unexpected = !this.lostError && !this.toAgent.writableEnded;
    const better = unexpected && this.explainLoss ? await this.explainLoss().catch(() => undefined) : undefined;
    this.lose(better ?? fallback);
  }

  /** Ends the agent's stdin: the agent kills what it runs and exits. */
  shutdown(): void {
    if (!this.toAgent.writableEnded) this.toAgent.end();
  }

  /**
   * Runs a command; `cancel` stops it (SIGTERM to its process group, SIGKILL 5 s later). With
   * `input` its stdin is fed from there (EXEC_PIPE), on a terminal when `input.tty` is set (EXEC_TTY).
   */
  exec(req: ExecRequest, sink: ExecSink, cancel?: CancelSwitch, input?: ExecInput): Promise<ExitStatus> {
    let payload: Buffer;
    try {
      payload = Buffer.concat([
        input?.tty ? encodeStrings([String(input.tty.rows), String(input.tty.cols)]) : Buffer.alloc(0),
        encodeStrings([req.cwd, req.user, req.command]), this.encodedEnv(req.env),
      ]);
    } catch (err) {
      return Promise.reject(err); // a NUL in a field: fail as a promise, like every other failure
    }
    const type = !input ? FrameType.EXEC : input.tty ? FrameType.EXEC_TTY : FrameType.EXEC_PIPE;
    const opened = input && ((id: number) => input.attach((t, p) => this.write(t, id, p)));
    return this.run<ExitStatus>(type, payload, (frame, done) => {
      if (frame.type === FrameType.STDOUT) return sink.stdout(frame.payload);
      if (frame.type === FrameType.STDERR && !input?.tty) return sink.stderr(frame.payload);
      if (frame.type === FrameType.EXIT) {
        input?.close(); // nothing more goes to this id
        done.resolve(decodeExit(frame.payload));
      } else if (input && (frame.type === FrameType.STDIN_ACK || frame.type === FrameType.STARTED)) input.onFrame(frame.type, frame.payload);
      else done.unexpected();
    }, cancel, opened);
  }

  /**
   * The env's part of an EXEC payload. A sandbox passes the same frozen env to every exec, so
   * it is encoded once, not on every round trip; an env that is not frozen could change, so it
   * is encoded each time.
   */
  private encodedEnv(env: readonly string[]): Buffer {
    if (this.envMemo?.env === env) return this.envMemo.encoded;
    const encoded = encodeStrings(env);
    if (Object.isFrozen(env)) this.envMemo = { env, encoded };
    return encoded;
  }

  /** Sends a signal to the process group of a running exec (no-op for unknown ids). */
  private signal(id: number, signo: number): void {
    if (this.lostError) return;
    this.toAgent.write(encodeFrame(FrameType.SIGNAL, id, Buffer.from([signo])));
  }

  async writeFile(path: string, mode: number, data: Buffer): Promise<void> {
    const id = this.allocId();
    const { result } = this.track<void>(id, (frame, done) => {
      if (frame.type === FrameType.OK) done.resolve();
      else done.unexpected();
    });
    await this.sendFrame(FrameType.WRITE_OPEN, id, encodeStrings([path, String(mode)]));
    for (let off = 0; off < data.length && !this.lostError; off += DATA_CHUNK) {
      await this.sendFrame(FrameType.WRITE_DATA, id, data.subarray(off, off + DATA_CHUNK));
    }
    await this.sendFrame(FrameType.WRITE_DATA, id, Buffer.alloc(0));
    return result;
  }

  async readFile(path: string, maxBytes: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let total = 0;
    await this.run<void>(FrameType.READ, encodeStrings([path]), (frame, done) => {
      if (frame.type === FrameType.STDOUT) {
        total += frame.payload.length;
        if (total > maxBytes) done.reject(new AgentOpError(`read ${path}: file exceeds ${maxBytes} bytes`));
        else chunks.push(frame.payload);
      } else if (frame.type === FrameType.OK) done.resolve();
      else done.unexpected();
    });
    return Buffer.concat(chunks);
  }

  async list(path: string): Promise<DirEntry[]> {
    const entries: DirEntry[] = [];
    await this.run<void>(FrameType.LIST, encodeStrings([path]), (frame, done) => {
      if (frame.type === FrameType.ENTRIES) {
        entries.push(...decodeEntries(frame.payload));
        if (entries.length > MAX_LIST_ENTRIES) done.reject(new AgentOpError(`list ${path}: more than ${MAX_LIST_ENTRIES} entries`));
      } else if (frame.type === FrameType.OK) done.resolve();
      else done.unexpected();
    });
    return entries;
  }

  /**
   * Starts an operation whose frames the caller handles (see file-streams.ts): registers a
   * fresh id, sends the opening frame, and returns the id with the operation's final result.
   */
  async startOp<T>(
    type: FrameTypeCode, payload: Buffer, handle: (frame: Frame, done: Completion<T>) => void | Promise<unknown>,
  ): Promise<{ id: number; result: Promise<T> }> {
    const id = this.allocId();
    const { result } = this.track(id, handle);
    await this.sendFrame(type, id, payload);
    return { id, result };
  }

  /**
   * Sends one frame (e.g. the next of an operation started with startOp()), waiting for the pipe
   * to drain: the agent's reading pace is the flow control.
   */
  async sendFrame(type: FrameTypeCode, id: number, payload: Buffer): Promise<void> {
    await this.write(type, id, payload);
  }

  /**
   * Sends one frame of a live operation without waiting: a promise only while the pipe is full,
   * which settles once it drains (the caller stops its own source meanwhile). Throws if the
   * channel is lost.
   */
  trySend(type: FrameTypeCode, id: number, payload: Buffer): Promise<void> | undefined {
    return this.write(type, id, payload);
  }

  async ping(): Promise<void> {
    await this.run<void>(FrameType.PING, Buffer.alloc(0), (frame, done) => {
      if (frame.type === FrameType.OK) done.resolve();
      else done.unexpected();
    });
  }

  // --- plumbing ---

  /**
   * Starts an operation and sends its opening frame. Not async, and no promise beyond the
   * operation's own unless the pipe is full: this is every exec's round trip.
   */
  private run<T>(
    type: FrameTypeCode, payload: Buffer,
    handle: (frame: Frame, done: Completion<T>) => void | Promise<unknown>, cancel?: CancelSwitch,
    opened?: (id: number) => void,
  ): Promise<T> {
    const id = this.allocId();
    const op = this.track(id, handle);
    let drained: Promise<void> | undefined;
    try {
      drained = this.write(type, id, payload); // most writes go straight into the pipe
    } catch (err) {
      return Promise.reject(err);
    }
    // After the opening frame, so that a switch already flipped signals an exec the agent knows.
    opened?.(id);
    if (cancel) this.armCancel(op, cancel);
    return drained ? drained.then(() => op.result) : op.result;
  }

  /** Cancellation: SIGTERM the exec's process group, SIGKILL if it is still there 5 s later. */
  private armCancel<T>(op: Operation<T>, cancel: CancelSwitch): void {
    let killTimer: NodeJS.Timeout | undefined;
    op.onEnd = () => {
      cancel.disarm();
      clearTimeout(killTimer);
    };
    cancel.whenAborted(() => {
      if (op.ended) return;
      this.signal(op.id, 15);
      killTimer = setTimeout(() => this.signal(op.id, 9), 5000);
    });
  }

  /**
   * Registers operation `id`. Its result promise is marked handled here, because its caller
   * may fail while sending (and throw that error instead): an unhandled rejection would
   * otherwise take the whole engine down.
   */
  private track<T>(id: number, handle: (frame: Frame, done: Completion<T>) => void | Promise<unknown>): Operation<T> {
    const op = new Operation<T>(id, handle, this.ops, this);
    if (this.lostError) op.fail(this.lostError);
    else this.ops.set(id, op);
    return op;
  }

  private allocId(): number {
    do {
      const id = this.nextId;
      this.nextId = this.nextId >= MAX_ID ? 1 : this.nextId + 1;
      if (!this.ops.has(id)) return id;
    } while (true);
  }

  /**
   * Writes one frame; returns a promise only when the pipe is full, which settles once it
   * drains (or closes). Throws if the channel is lost.
   */
  private write(type: FrameTypeCode, id: number, payload: Buffer): Promise<void> | undefined {
    if (this.lostError) throw this.lostError;
    const room = payload.length < UNCOPIED_PAYLOAD ? this.toAgent.write(encodeFrame(type, id, payload)) : this.corked(type, id, payload);
    if (room) return undefined;
    return this.drained();
  }

  /**
   * Writes a big payload (file data) behind its own header without copying it into one frame
   * buffer: corked, the two go out in one writev. Returns the last write's `false` for "full".
   */
  private corked(type: FrameTypeCode, id: number, payload: Buffer): boolean {
    const header = encodeFrameHeader(type, id, payload.length);
    this.toAgent.cork();
    this.toAgent.write(header);
    const room = this.toAgent.write(payload);
    this.toAgent.uncork();
    return room;
  }

  /**
   * Settles once the pipe drains (or closes). One wait is shared by every writer that found the
   * pipe full: a chunk's frames, parallel transfers and execs would otherwise each add a pair
   * of listeners (Node warns past 10) for one and the same event.
   */
  private drained(): Promise<void> {
    if (this.toAgent.destroyed) return Promise.resolve();
    return (this.draining ??= new Promise<void>((resolve) => {
      const done = () => {
        this.toAgent.off("drain", done);
        this.toAgent.off("close", done);
        this.draining = undefined;
        resolve();
      };
      this.toAgent.on("drain", done);
      this.toAgent.on("close", done);
    }));
  }

  /** Stops reading from the sandbox until `until` settles (nested pauses are counted). */
  private pauseUntil(until: Promise<unknown>): void {
    if (this.pausedBy++ === 0) this.fromAgent.pause();
    until.catch(() => {}).finally(() => {
      if (--this.pausedBy === 0 && !this.lostError) this.fromAgent.resume();
    });
  }

  private onData(chunk: Buffer): void {
    if (this.lostError) return;
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.lose(err instanceof Error ? err : new AgentProtocolError(String(err)));
      return;
    }
    for (const frame of frames) {
      if (frame.type === FrameType.READY) {
        this.resolveReady(frame.payload.toString("utf8"));
        continue;
      }
      try {
        if (frame.type === FrameType.FILE_EVENT) {
          const delivered = this.onFileEvent?.(frame.payload);
          if (delivered) this.pauseUntil(delivered);
          continue;
        }
        const slowDown = this.ops.get(frame.id)?.onFrame(frame);
        if (slowDown) this.pauseUntil(slowDown);
      } catch (err) {
        // e.g. a malformed EXIT or ENTRIES payload from the guest
        this.lose(err instanceof Error ? err : new AgentProtocolError(String(err)));
        return;
      }
    }
  }
}

export interface Completion<T> {
  resolve(value: T): void;
  reject(err: Error): void;
  unexpected(): void;
}

/**
 * One operation in flight: its frames go to `handle` until it completes, fails, or the channel
 * is lost. A class rather than a handful of closures: an exec round trip makes one.
 */
class Operation<T> implements PendingOp, Completion<T> {
  readonly result: Promise<T>;
  ended = false;
  /** Runs once when the operation ends, however it ends (e.g. clears a kill timer). */
  onEnd: (() => void) | undefined;
  private resolveResult!: (value: T) => void;
  private rejectResult!: (err: Error) => void;

  constructor(
    readonly id: number,
    private readonly handle: (frame: Frame, done: Completion<T>) => void | Promise<unknown>,
    private readonly ops: Map<number, PendingOp>,
    private readonly channel: { lose(err: Error): void },
  ) {
    this.result = new Promise<T>((resolve, reject) => {
      this.resolveResult = resolve;
      this.rejectResult = reject;
    });
    this.result.catch(() => {});
  }

  onFrame(frame: Frame): void | Promise<unknown> {
    if (frame.type === FrameType.ERROR) return this.reject(new AgentOpError(frame.payload.toString("utf8")));
    return this.handle(frame, this);
  }

  resolve(value: T): void {
    if (this.end()) this.resolveResult(value);
  }

  reject(err: Error): void {
    if (this.end()) this.rejectResult(err);
  }

  unexpected(): void {
    this.channel.lose(new AgentProtocolError(`unexpected frame for operation ${this.id}`));
  }

  /** The channel is gone (the connection clears its table of operations itself). */
  fail(err: Error): void {
    if (this.finish()) this.rejectResult(err);
  }

  /** Completes the operation: its id is free again. False if it had already ended. */
  private end(): boolean {
    if (!this.finish()) return false;
    if (this.ops.get(this.id) === this) this.ops.delete(this.id);
    return true;
  }

  private finish(): boolean {
    if (this.ended) return false;
    this.ended = true;
    this.onEnd?.();
    return true;
  }
}
