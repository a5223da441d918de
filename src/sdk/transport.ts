// JSON-RPC 2.0 over the engine's stdio (spec §1), or over a connection to a resident engine:
// NDJSON both ways, many concurrent requests matched by id, notifications routed by params.id.
import { setTimeout as sleep } from "node:timers/promises";
import { encodeJsonLine, lineText } from "../protocol/base64.js";
import { parseReadChunkResult } from "../protocol/file-chunk-lines.js";
import { ErrorCode, MAX_REQUEST_LINE, type RpcRequest } from "../protocol/rpc.js";
import { MatchlockError, RPCError, TimeoutError } from "./errors.js";
import type { EngineLink } from "./engine-link.js";
import { LineSplitter } from "../protocol/line-splitter.js";
import { parseOutputNotification } from "./output-notification.js";
import { OutputTail } from "./output-tail.js";
import type { CallOptions } from "./types.js";
import { Method, Notification } from "../protocol/methods.js";
import { isErrorKind } from "../protocol/errors.js";

export type JsonObject = Record<string, unknown>;
/** Returning a promise says "slow down": the transport stops reading the engine until it settles. */
export type NotificationHandler = (method: string, params: JsonObject) => void | Promise<unknown>;

export interface RequestOptions extends CallOptions {
  /** Receives this request's notifications (e.g. exec_stream.stdout), before the response. */
  onNotification?: NotificationHandler;
  /**
   * The caller reads a `read_file_chunk` result and takes its `data` as a Base64Text (the text's
   * bytes, read without JSON.parse) as well as a string; no other call sees a Base64Text.
   */
  fileChunk?: boolean;
}

interface Pending {
  onNotification?: NotificationHandler;
  fileChunk?: boolean;
  settle(error: Error | undefined, result?: JsonObject): void;
  /** Settles with the request: a pause it asked for never outlives it (made only with onNotification). */
  settled?: Promise<void>;
}

type State = "idle" | "starting" | "running" | "stopped";

/** How long to wait, after stdout closes, for the exit status and last stderr lines. */
const DEATH_DETAILS_WAIT_MS = 1000;

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export class Transport {
  private link?: EngineLink;
  private state: State = "idle";
  private startPromise?: Promise<void>;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly stderrTail = new OutputTail();
  private exitStatus?: string;
  private exitPromise: Promise<void> = Promise.resolve();
  private stderrClosed: Promise<void> = Promise.resolve();
  private exited = false;
  private shuttingDown = false;
  /** Set once the process is gone: why, for later "not running" errors. */
  private deathDetail = "";
  /** How many slow-down requests hold the engine's stdout paused. */
  private pausedBy = 0;
  private markStdoutClosed!: () => void;
  private readonly stdoutClosedDone = new Promise<void>((resolve) => (this.markStdoutClosed = resolve));

  constructor(
    /** Spawns the engine or connects to one. */
    private readonly open: () => Promise<EngineLink>,
    private readonly onEvent?: (params: JsonObject) => void,
  ) {}

  get running(): boolean {
    return this.state === "running";
  }

  /** Settles when the engine process (or the connection to it) is gone. */
  get ended(): Promise<void> {
    return this.exitPromise;
  }

  /** Spawns (or connects to) the engine; resolves once it is running. Idempotent. */
  start(): Promise<void> {
    this.startPromise ??= this.openLink();
    return this.startPromise;
  }

  request(method: string, params: JsonObject = {}, opts: RequestOptions = {}): Promise<JsonObject> {
    if (this.state !== "running") {
      return Promise.reject(new MatchlockError(`Matchlock process not running${this.deathDetail}`, { kind: "engine_lost" }));
    }
    const { signal, timeoutMs } = opts;
    if (timeoutMs !== undefined && !(timeoutMs > 0 && Number.isFinite(timeoutMs))) {
      return Promise.reject(new MatchlockError(`timeoutMs must be a positive number, got ${timeoutMs}`, { kind: "invalid_argument" }));
    }
    if (signal?.aborted) return Promise.reject(cancelledError(method, signal));

    const id = this.nextId++;
    // Only what this call uses is made: an exec's round trip passes here.
    return new Promise<JsonObject>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let onAbort: (() => void) | undefined;
      let markSettled: (() => void) | undefined;
      const entry: Pending = {
        onNotification: opts.onNotification,
        fileChunk: opts.fileChunk,
        settle: (error, result) => {
          markSettled?.();
          this.pending.delete(id);
          if (timer) clearTimeout(timer);
          if (onAbort) signal!.removeEventListener("abort", onAbort);
          if (error) reject(error);
          else resolve(result ?? {});
        },
      };
      if (opts.onNotification) entry.settled = new Promise((r) => (markSettled = r));
      this.pending.set(id, entry);
      if (timeoutMs !== undefined) timer = setTimeout(() => this.cancel(id, new TimeoutError(method, timeoutMs)), timeoutMs);
      if (signal) {
        onAbort = () => this.cancel(id, cancelledError(method, signal));
        signal.addEventListener("abort", onAbort, { once: true });
      }
      this.send(method, params, id, (err) => {
        if (this.pending.get(id) === entry) {
          entry.settle(new MatchlockError(`failed to send ${method} request: ${err.message}`, { cause: err }));
        }
      });
    });
  }

  /**
   * A message nobody waits an answer for (exec_pipe.stdin_eof, exec_tty.resize): sent with a
   * fresh id, as every SDK of the protocol does; dropped when the engine is not running.
   */
  post(method: string, params: JsonObject): void {
    if (this.state === "running") this.send(method, params, this.nextId++, () => undefined);
  }

  /**
   * Ends the session: closes stdin (the engine exits on EOF), waits up to `graceMs` for the
   * exit, then SIGKILLs. Calls still pending fail with "Matchlock client closed".
   */
  async shutdown(graceMs: number): Promise<void> {
    if (this.startPromise) await this.startPromise.catch(() => undefined);
    const link = this.link;
    this.shuttingDown = true;
    this.state = "stopped";
    // No link: the spawn or connect itself failed, there is nothing to stop.
    if (!link || this.exited) return;
    link.endInput();
    if (!(await this.waitExit(graceMs))) {
      // With useSudo this only kills sudo; the engine still sees EOF and exits on its own.
      link.kill();
      await this.waitExit(5000);
    }
  }

  private async openLink(): Promise<void> {
    this.state = "starting";
    let link: EngineLink;
    try {
      link = await this.open();
    } catch (err) {
      this.state = "stopped";
      throw err;
    }
    this.link = link;
    this.exitPromise = link.ended.then((status) => {
      this.exited = true;
      this.exitStatus = status;
    });
    if (link.stderr) {
      const stderr = link.stderr;
      this.stderrClosed = new Promise((resolve) => stderr.once("close", resolve));
      stderr.on("data", (chunk: Buffer) => this.stderrTail.push(chunk));
    }
    const splitter = new LineSplitter((line) => this.handleLine(line));
    link.output.on("data", (chunk: Buffer) => splitter.push(chunk));
    link.output.on("end", () => splitter.end());
    link.output.once("close", () => void this.onStdoutClosed());
    if (this.state === "starting") this.state = "running";
  }

  /**
   * Writes one request line; `onError` hears if it could not be sent. A write fails (EPIPE) when
   * the engine is gone: its exit status and the end of its stderr, which stdout's close reports
   * to every pending call, say why far better than the write error, so `onError` hears only
   * after that report (or a bound), and a call it settled is not settled again.
   */
  private send(method: string, params: JsonObject, id: number, onError: (err: Error) => void): void {
    const message: RpcRequest = { jsonrpc: "2.0", method, id };
    if (Object.keys(params).length > 0) message.params = params;
    const line = encodeJsonLine(message); // params may hold Base64Data (file chunks)
    if (line.length > MAX_REQUEST_LINE) {
      // Engines refuse longer lines; fail here, clearly, instead of sending megabytes for nothing.
      return onError(new Error(
        `the request is ${line.length} bytes, over the engine's ${MAX_REQUEST_LINE}-byte limit per message (one write_file carries at most about 7.5 MB)`,
      ));
    }
    // One write() per message: Node queues writes in call order and never interleaves them,
    // which is all the serialisation NDJSON needs.
    this.link!.input.write(line, (err) => {
      if (!err) return;
      void this.stdoutClosedReported.then(() => onError(err));
    });
  }

  /** Settles the call locally and tells the engine to stop it, without waiting for the reply. */
  private cancel(id: number, error: Error): void {
    const entry = this.pending.get(id);
    if (!entry) return;
    entry.settle(error);
    // The engine answers the cancelled request with -32003 (dropped: nobody waits for that id
    // any more); a seed engine answers the cancel itself with -32601, also dropped.
    if (this.state === "running") this.send(Method.CANCEL, { id }, this.nextId++, () => undefined);
  }

  private handleLine(line: Buffer): void {
    const output = parseOutputNotification(line);
    if (output) return this.handleNotification(output.method, output.params);
    const chunk = parseReadChunkResult(line); // file data: megabyte lines that skip JSON.parse
    if (chunk && this.pending.get(chunk.id)?.fileChunk) return this.handleResponse(chunk.id, { result: chunk.result });
    let message: unknown;
    try {
      message = JSON.parse(lineText(line));
    } catch {
      return; // the engine must not print non-protocol lines, but if it does, skip them
    }
    if (!isObject(message)) return;
    if (typeof message.id === "number") {
      this.handleResponse(message.id, message);
    } else if (typeof message.method === "string" && isObject(message.params)) {
      this.handleNotification(message.method, message.params);
    }
  }

  private handleResponse(id: number, message: JsonObject): void {
    const entry = this.pending.get(id);
    if (!entry) return; // unknown or cancelled id
    const error = message.error;
    if (isObject(error)) {
      const code = typeof error.code === "number" ? error.code : ErrorCode.INTERNAL_ERROR;
      const kind = isObject(error.data) && isErrorKind(error.data.kind) ? error.data.kind : undefined;
      entry.settle(new RPCError(code, typeof error.message === "string" ? error.message : "", kind ? { kind } : {}));
    } else {
      entry.settle(undefined, isObject(message.result) ? message.result : {});
    }
  }

  private handleNotification(method: string, params: JsonObject): void {
    // Handlers are user code running inside a stream 'data' callback: a throw must not
    // become an uncaught exception that takes down the reader.
    try {
      if (method === Notification.EVENT) {
        this.onEvent?.(params);
      } else if (typeof params.id === "number") {
        const entry = this.pending.get(params.id);
        const slowDown = entry?.onNotification?.(method, params);
        if (slowDown) this.pauseUntil(entry!.settled ? Promise.race([slowDown, entry!.settled]) : slowDown);
      }
    } catch {
      // the client's handlers record their own failures
    }
  }

  /**
   * Stops reading the engine's stdout until `until` settles (nested pauses are counted). The
   * engine then stops reading its sandbox, so the command blocks instead of anyone buffering.
   */
  private pauseUntil(until: Promise<unknown>): void {
    if (this.pausedBy++ === 0) this.link?.output.pause();
    until.catch(() => undefined).finally(() => {
      if (--this.pausedBy === 0) this.link?.output.resume();
    });
  }

  /** Settles once a closed stdout failed every pending call (with the engine's exit status and stderr), or after a bound. */
  private get stdoutClosedReported(): Promise<void> {
    return Promise.race([this.stdoutClosedDone, sleep(2 * DEATH_DETAILS_WAIT_MS, undefined, { ref: false })]).then(() => undefined);
  }

  private async onStdoutClosed(): Promise<void> {
    this.state = "stopped";
    // No more responses can arrive. Let the exit status and last stderr lines come in, so the
    // error can say why.
    await Promise.race([Promise.all([this.exitPromise, this.stderrClosed]), sleep(DEATH_DETAILS_WAIT_MS)]);
    let message: string;
    const kind = this.shuttingDown ? "cancelled" : "engine_lost";
    if (this.shuttingDown) {
      message = "Matchlock client closed";
    } else {
      const tail = this.stderrTail.text();
      this.deathDetail = (this.exitStatus ? ` (${this.exitStatus})` : "") + (tail ? `: ${tail}` : "");
      message = `Matchlock process closed unexpectedly${this.deathDetail}`;
    }
    for (const entry of [...this.pending.values()]) entry.settle(new MatchlockError(message, { kind }));
    this.markStdoutClosed();
  }

  private async waitExit(ms: number): Promise<boolean> {
    if (this.exited) return true;
    const ac = new AbortController();
    const timedOut = sleep(ms, false, { signal: ac.signal }).catch(() => false);
    const exited = await Promise.race([this.exitPromise.then(() => true), timedOut]);
    ac.abort();
    return exited;
  }
}

function cancelledError(method: string, signal: AbortSignal): RPCError {
  return new RPCError(ErrorCode.CANCELLED, `${method} cancelled`, { cause: signal.reason });
}
