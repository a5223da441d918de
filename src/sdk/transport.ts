// JSON-RPC 2.0 over the engine's stdio (spec §1): one process, NDJSON both ways, many
// concurrent requests matched by id, notifications routed by params.id.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { encodeJsonLine, lineText } from "../protocol/base64.js";
import { ErrorCode, MAX_REQUEST_LINE, Notification, type RpcRequest } from "../protocol/rpc.js";
import { MatchlockError, RPCError, TimeoutError } from "./errors.js";
import { LineSplitter } from "./line-splitter.js";
import { parseOutputNotification } from "./output-notification.js";
import { OutputTail } from "./output-tail.js";
import type { CallOptions } from "./types.js";

export type JsonObject = Record<string, unknown>;
/** Returning a promise says "slow down": the transport stops reading the engine until it settles. */
export type NotificationHandler = (method: string, params: JsonObject) => void | Promise<unknown>;

export interface RequestOptions extends CallOptions {
  /** Receives this request's notifications (e.g. exec_stream.stdout), before the response. */
  onNotification?: NotificationHandler;
}

interface Pending {
  onNotification?: NotificationHandler;
  settle(error: Error | undefined, result?: JsonObject): void;
  /** Settles with the request: a pause it asked for never outlives it. */
  settled: Promise<void>;
}

type State = "idle" | "starting" | "running" | "stopped";

/** How long to wait, after stdout closes, for the exit status and last stderr lines. */
const DEATH_DETAILS_WAIT_MS = 1000;
/** After the process exits, how long a grandchild may keep stdout open before we stop reading. */
const STDOUT_AFTER_EXIT_MS = 1000;

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export class Transport {
  private child?: ChildProcessWithoutNullStreams;
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

  constructor(
    private readonly argv: readonly string[],
    private readonly onEvent?: (params: JsonObject) => void,
  ) {}

  get running(): boolean {
    return this.state === "running";
  }

  /** Spawns the engine; resolves once the process is running. Idempotent. */
  start(): Promise<void> {
    this.startPromise ??= this.spawnEngine();
    return this.startPromise;
  }

  request(method: string, params: JsonObject = {}, opts: RequestOptions = {}): Promise<JsonObject> {
    if (this.state !== "running") {
      return Promise.reject(new MatchlockError(`Matchlock process not running${this.deathDetail}`));
    }
    const { signal, timeoutMs } = opts;
    if (timeoutMs !== undefined && !(timeoutMs > 0 && Number.isFinite(timeoutMs))) {
      return Promise.reject(new MatchlockError(`timeoutMs must be a positive number, got ${timeoutMs}`));
    }
    if (signal?.aborted) return Promise.reject(cancelledError(method, signal));

    const id = this.nextId++;
    return new Promise<JsonObject>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => this.cancel(id, cancelledError(method, signal!));
      let markSettled!: () => void;
      const entry: Pending = {
        onNotification: opts.onNotification,
        settled: new Promise((r) => (markSettled = r)),
        settle: (error, result) => {
          markSettled();
          this.pending.delete(id);
          if (timer) clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          if (error) reject(error);
          else resolve(result ?? {});
        },
      };
      this.pending.set(id, entry);
      if (timeoutMs !== undefined) timer = setTimeout(() => this.cancel(id, new TimeoutError(method, timeoutMs)), timeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.send(method, params, id).catch((err: Error) => {
        if (this.pending.get(id) === entry) {
          entry.settle(new MatchlockError(`failed to send ${method} request: ${err.message}`, { cause: err }));
        }
      });
    });
  }

  /**
   * Ends the session: closes stdin (the engine exits on EOF), waits up to `graceMs` for the
   * exit, then SIGKILLs. Calls still pending fail with "Matchlock client closed".
   */
  async shutdown(graceMs: number): Promise<void> {
    if (this.startPromise) await this.startPromise.catch(() => undefined);
    const child = this.child;
    this.shuttingDown = true;
    this.state = "stopped";
    // No pid: the spawn itself failed, there is no process to stop.
    if (!child || child.pid === undefined || this.exited) return;
    child.stdin.end();
    if (!(await this.waitExit(graceMs))) {
      // With useSudo this only kills sudo; the engine still sees EOF and exits on its own.
      child.kill("SIGKILL");
      await this.waitExit(5000);
    }
  }

  private async spawnEngine(): Promise<void> {
    this.state = "starting";
    const [command, ...args] = this.argv;
    const child = spawn(command!, args, { stdio: ["pipe", "pipe", "pipe"] });
    this.child = child;
    this.exitPromise = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.exited = true;
        this.exitStatus = signal ? `killed by ${signal}` : `exit code ${code}`;
        // If a grandchild inherited stdout it could hold it open forever; stop waiting for EOF.
        setTimeout(() => child.stdout.destroy(), STDOUT_AFTER_EXIT_MS).unref();
        resolve();
      });
    });
    this.stderrClosed = new Promise((resolve) => child.stderr.once("close", resolve));
    child.on("error", () => undefined); // spawn errors are handled below; kill errors are moot
    child.stdin.on("error", () => undefined); // EPIPE once the engine is gone: stdout close reports it

    const splitter = new LineSplitter((line) => this.handleLine(line));
    child.stdout.on("data", (chunk: Buffer) => splitter.push(chunk));
    child.stdout.on("end", () => splitter.end());
    child.stdout.once("close", () => void this.onStdoutClosed());
    child.stderr.on("data", (chunk: Buffer) => this.stderrTail.push(chunk));

    try {
      await new Promise<void>((resolve, reject) => {
        child.once("spawn", resolve);
        child.once("error", reject);
      });
    } catch (err) {
      this.state = "stopped";
      throw spawnError(this.argv, err as NodeJS.ErrnoException);
    }
    if (this.state === "starting") this.state = "running";
  }

  private send(method: string, params: JsonObject, id: number): Promise<void> {
    const message: RpcRequest = { jsonrpc: "2.0", method, id };
    if (Object.keys(params).length > 0) message.params = params;
    const line = encodeJsonLine(message); // params may hold Base64Data (file chunks)
    if (line.length > MAX_REQUEST_LINE) {
      // Engines refuse longer lines; fail here, clearly, instead of sending megabytes for nothing.
      return Promise.reject(new Error(
        `the request is ${line.length} bytes, over the engine's ${MAX_REQUEST_LINE}-byte limit per message (one write_file carries at most about 7.5 MB)`,
      ));
    }
    // One write() per message: Node queues writes in call order and never interleaves them,
    // which is all the serialisation NDJSON needs.
    return new Promise((resolve, reject) => {
      this.child!.stdin.write(line, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Settles the call locally and tells the engine to stop it, without waiting for the reply. */
  private cancel(id: number, error: Error): void {
    const entry = this.pending.get(id);
    if (!entry) return;
    entry.settle(error);
    // The engine answers the cancelled request with -32003 (dropped: nobody waits for that id
    // any more); a seed engine answers the cancel itself with -32601, also dropped.
    if (this.state === "running") this.send("cancel", { id }, this.nextId++).catch(() => undefined);
  }

  private handleLine(line: Buffer): void {
    const output = parseOutputNotification(line);
    if (output) return this.handleNotification(output.method, output.params);
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
      entry.settle(new RPCError(code, typeof error.message === "string" ? error.message : ""));
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
        if (slowDown) this.pauseUntil(Promise.race([slowDown, entry!.settled]));
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
    if (this.pausedBy++ === 0) this.child?.stdout.pause();
    until.catch(() => undefined).finally(() => {
      if (--this.pausedBy === 0) this.child?.stdout.resume();
    });
  }

  private async onStdoutClosed(): Promise<void> {
    this.state = "stopped";
    // No more responses can arrive. Let the exit status and last stderr lines come in, so the
    // error can say why.
    await Promise.race([Promise.all([this.exitPromise, this.stderrClosed]), sleep(DEATH_DETAILS_WAIT_MS)]);
    let message: string;
    if (this.shuttingDown) {
      message = "Matchlock client closed";
    } else {
      const tail = this.stderrTail.text();
      this.deathDetail = (this.exitStatus ? ` (${this.exitStatus})` : "") + (tail ? `: ${tail}` : "");
      message = `Matchlock process closed unexpectedly${this.deathDetail}`;
    }
    for (const entry of [...this.pending.values()]) entry.settle(new MatchlockError(message));
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

function spawnError(argv: readonly string[], err: NodeJS.ErrnoException): MatchlockError {
  const command = argv.join(" ");
  if (err.code === "ENOENT") {
    return new MatchlockError(
      `Cannot start the matchlock engine (${command}): ${argv[0]} not found. ` +
        "Install matchlock, or set Config.binaryPath or the MATCHLOCK_BIN environment variable to its path.",
      { cause: err },
    );
  }
  return new MatchlockError(`Cannot start the matchlock engine (${command}): ${err.message}`, { cause: err });
}
