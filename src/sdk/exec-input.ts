// The input side of a running exec_pipe / exec_tty: stdin, EOF, resizes and signals, sent with
// the id of the request that started the command.
//
// Stdin goes as `exec_write` (a matchlock extension), one at a time: the engine answers once the
// command can take more, so a fast source waits for a slow command, and nothing piles up in the
// engine or here. The spec's fire-and-forget `*.stdin` would do the same only by making the engine
// stop reading this client, which would also hold up a `cancel` or a kill. EOF and resizes are
// the spec's fire-and-forget messages; they never hold anything up.
import { constants } from "node:os";
import { Base64Data } from "../protocol/base64.js";
import { Input, Method } from "../protocol/methods.js";
import { MatchlockError, RPCError } from "./errors.js";
import type { Transport } from "./transport.js";
import type { BinaryLike, StreamReader, TTYSize } from "./types.js";

/** Largest stdin piece in one exec_write (bigger writes are split). */
const WRITE_PIECE = 1024 * 1024;
/**
 * exec_writes sent and not yet answered: a few keep the pipe to the engine busy while each
 * waits for its reply (one at a time is a round trip per piece); the engine refuses a client
 * that does not wait at all.
 */
const WRITES_IN_FLIGHT = 4;

export function toBuffer(chunk: BinaryLike): Buffer {
  if (typeof chunk === "string") return Buffer.from(chunk, "utf8");
  if (chunk instanceof ArrayBuffer) return Buffer.from(chunk);
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new MatchlockError(`stdin chunks must be strings, Buffers, Uint8Arrays or ArrayBuffers, got ${typeof chunk}`, { kind: "invalid_argument" });
}

/** A signal as a number: a name (SIGTERM, TERM) or a number 1-64. */
export function signalNumber(signal: NodeJS.Signals | string | number): number {
  if (typeof signal === "number") {
    if (Number.isInteger(signal) && signal >= 1 && signal <= 64) return signal;
  } else {
    const name = (signal.startsWith("SIG") ? signal : `SIG${signal}`) as NodeJS.Signals;
    const n = constants.signals[name];
    if (n !== undefined) return n;
  }
  throw new MatchlockError(`unknown signal ${JSON.stringify(signal)}`, { kind: "invalid_argument" });
}

export class ExecInputChannel {
  private eofSent = false;
  private readonly inFlight = new Set<Promise<unknown>>();
  private failure: unknown;
  private over = false;
  private readonly onStop: Array<() => void> = [];

  constructor(private readonly transport: Transport, readonly tty: boolean, readonly id: number) {}

  /** The command ended: nothing more is sent. */
  stop(): void {
    if (this.over) return;
    this.over = true;
    for (const f of this.onStop.splice(0)) f();
  }

  /** Runs `f` when the command ends (at once if it has). */
  whenStopped(f: () => void): void {
    if (this.over) f();
    else this.onStop.push(f);
  }

  get stopped(): boolean {
    return this.over;
  }

  /** Resolves once the command can take more; false when it no longer takes input (it ended). */
  async write(data: Buffer): Promise<boolean> {
    for (let off = 0; off < data.length; off += WRITE_PIECE) {
      while (this.inFlight.size >= WRITES_IN_FLIGHT) await Promise.race(this.inFlight);
      if (this.failure !== undefined) throw this.failure;
      if (this.over || this.eofSent) return false;
      const sent: Promise<unknown> = this.transport
        .request(Method.EXEC_WRITE, { id: this.id, data: new Base64Data(data.subarray(off, off + WRITE_PIECE)) })
        .catch((err: unknown) => {
          if (isNotRunning(err)) this.stop();
          else this.failure ??= err;
        })
        .finally(() => this.inFlight.delete(sent));
      this.inFlight.add(sent);
    }
    if (this.failure !== undefined) throw this.failure;
    return !this.over;
  }

  end(): void {
    if (this.over || this.eofSent) return;
    this.eofSent = true;
    this.transport.post(this.tty ? Input.TTY_STDIN_EOF : Input.PIPE_STDIN_EOF, { id: this.id });
  }

  /** Sizes that are not positive integers are skipped (as upstream). */
  resize(rows: number, cols: number): void {
    const r = Math.trunc(rows);
    const c = Math.trunc(cols);
    if (this.over || !this.tty || !(r > 0 && c > 0 && r <= 0xffff && c <= 0xffff)) return;
    this.transport.post(Input.TTY_RESIZE, { id: this.id, rows: r, cols: c });
  }

  /** False when the command had already ended. */
  async signal(signal: NodeJS.Signals | string | number): Promise<boolean> {
    const signo = signalNumber(signal);
    if (this.over) return false;
    try {
      await this.transport.request(Method.EXEC_SIGNAL, { id: this.id, signal: signo });
      return true;
    } catch (err) {
      if (isNotRunning(err)) return false;
      throw err;
    }
  }
}

function isNotRunning(err: unknown): boolean {
  return err instanceof RPCError && err.kind === "not_found";
}

/**
 * Copies `source` into the command's stdin, then sends EOF; stops (without EOF) when the command
 * ends. A Node Readable is paused rather than destroyed when it stops, so process.stdin stays usable.
 */
export async function pumpStdin(input: ExecInputChannel, source: StreamReader | undefined): Promise<void> {
  if (source === undefined) return input.end();
  if (isNodeReadable(source)) return pumpReadable(input, source);
  if (typeof source !== "object" || source === null || !(Symbol.asyncIterator in source || Symbol.iterator in source)) {
    throw new MatchlockError("stdin must be a Readable or an (async) iterable of chunks", { kind: "invalid_argument" });
  }
  const it = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : (source as Iterable<BinaryLike>)[Symbol.iterator]();
  input.whenStopped(() => void Promise.resolve(it.return?.()).catch(() => undefined));
  try {
    while (!input.stopped) {
      const next = await it.next();
      if (next.done) return input.end();
      if (!(await input.write(toBuffer(next.value)))) return;
    }
  } catch (err) {
    if (!input.stopped) throw err;
  }
}

function isNodeReadable(s: unknown): s is NodeJS.ReadableStream {
  return typeof s === "object" && s !== null && typeof (s as NodeJS.ReadableStream).on === "function" && typeof (s as NodeJS.ReadableStream).pause === "function";
}

function pumpReadable(input: ExecInputChannel, source: NodeJS.ReadableStream): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const finish = (err?: unknown) => {
      source.off("data", onData);
      source.off("end", onEnd);
      source.off("error", finish);
      source.pause();
      if (err !== undefined && !input.stopped) reject(err);
      else resolve();
    };
    const onData = (chunk: BinaryLike) => {
      source.pause();
      input.write(toBuffer(chunk)).then((more) => (more ? source.resume() : finish()), finish);
    };
    const onEnd = () => {
      input.end();
      finish();
    };
    // A source that never ends (a terminal) must not outlive the command.
    input.whenStopped(() => finish());
    source.on("data", onData);
    source.on("end", onEnd);
    source.on("error", finish);
    source.resume();
  });
}

/** Sends each size of `sizes` until the command ends. */
export async function pumpResizes(input: ExecInputChannel, sizes: AsyncIterable<TTYSize> | Iterable<TTYSize>): Promise<void> {
  const it = Symbol.asyncIterator in sizes ? sizes[Symbol.asyncIterator]() : (sizes as Iterable<TTYSize>)[Symbol.iterator]();
  input.whenStopped(() => void Promise.resolve(it.return?.()).catch(() => undefined));
  while (!input.stopped) {
    const next = await it.next();
    if (next.done) return;
    if (Array.isArray(next.value)) input.resize(Number(next.value[0]), Number(next.value[1]));
  }
}
