// The SDK's entry point: one Client = one engine session (a connection to this user's shared
// engine, its own `matchlock rpc` process, or a connection to a resident `matchlock serve`) =
// (at most) one VM.
import { PassThrough, Readable } from "node:stream";
import { Base64Data } from "../protocol/base64.js";
import { Method, Notification } from "../protocol/methods.js";
import { connectEngine, spawnEngine } from "./engine-link.js";
import { engineCommand, resolveEngineSocket, rmCommand, rpcCommand } from "./engine-command.js";
import { connectSharedEngine, sharedEngineFor } from "./shared-engine.js";
import { MatchlockError, RPCError } from "./errors.js";
import { NetworkHookServer, networkInterceptionWire } from "./network-hooks.js";
import { CHUNK_BYTES, TransferSlots, isMethodNotFound, readChunked, writeChunked, type FileContent } from "./file-transfer.js";
import { shakeHands } from "./handshake.js";
import { OutputSink } from "./output-sink.js";
import { ExecInputChannel, pumpResizes, pumpStdin } from "./exec-input.js";
import { ProcessHandle } from "./process-handle.js";
import { enterRawMode, followResizes, sizeOf } from "./terminal.js";
import { runCommand } from "./run-command.js";
import type { Sandbox } from "./sandbox.js";
import { Transport, type JsonObject } from "./transport.js";
import type {
  CallOptions,
  Config,
  CreateOptions,
  ExecOptions,
  ExecResult,
  ExecStreamOptions,
  ExecStreamResult,
  ExecPipeOptions,
  ExecPipeResult,
  ExecInteractiveOptions,
  ExecInteractiveResult,
  SpawnOptions,
  StreamReader,
  OutputTarget,
  FileInfo,
  LogStreamOptions,
  MakeDirOptions,
  PortForward,
  PortForwardBinding,
  AllowListAddResult,
  AllowListDeleteResult,
  RemoveFileOptions,
  SandboxEvent,
  VolumeInfo,
  WriteFileOptions,
} from "./types.js";
import { volumeCreate, volumeList, volumeRemove } from "./volumes.js";
import { checkAllowListHosts, checkCreateOptions, checkForwardAddresses, checkTimeoutSeconds } from "./validate.js";
import {
  decodeBase64, stringList, toCreateParams, toExecResult, toExecStreamResult, toFileInfo, toFileInfos, toPortForwardBindings, toPortForwardParams,
  withCreateForwards,
} from "./wire.js";
import { parsePortSpec } from "../protocol/port-forward.js";

/** How long close(0) waits for the engine's reply to `close` before killing it anyway. */
const CLOSE_REPLY_WAIT_MS = 10_000;
/** Extra time, beyond the close timeout, for the reply and for the process to exit. */
const CLOSE_GRACE_MS = 5_000;
const EXIT_GRACE_MS = 3_000;

export class Client implements AsyncDisposable {
  /** The engine command without its subcommand: `rpc` and `rm` run the same engine. */
  private readonly engine: string[];
  private readonly useSudo: boolean;
  private readonly keepOnDispose: boolean;
  /** A resident engine's socket given by the user (its sandboxes are its own business). */
  private readonly socket: string | undefined;
  /** What the engine is, for errors: its socket or its command. */
  private readonly engineName: string;
  private readonly transport: Transport;
  private readonly eventListeners = new Set<(event: SandboxEvent) => void>();
  private startPromise?: Promise<void>;
  private closePromise?: Promise<void>;
  private currentVmId?: string;
  /** The engine is ours (it answered the handshake): its protocol extensions may be used. */
  private ourEngine = false;
  private readonly transferSlots = new TransferSlots();
  /** Serves the network interception hooks of the sandbox this client made. */
  private hookServer?: NetworkHookServer;

  constructor(config: Config = {}) {
    // Resolved once, so `rpc` and `rm` run the same engine even if MATCHLOCK_BIN changes later.
    this.engine = engineCommand(config);
    this.useSudo = config.useSudo === true;
    this.keepOnDispose = config.keepOnDispose === true;
    const socket = (this.socket = resolveEngineSocket(config));
    if (socket !== undefined && this.useSudo) {
      throw new MatchlockError("useSudo cannot be combined with an engine socket (Config.engineSocket or MATCHLOCK_ENGINE_SOCKET): the resident engine already runs as its own user", { kind: "invalid_argument" });
    }
    const shared = sharedEngineFor(config, socket);
    const argv = rpcCommand(this.engine, this.useSudo);
    const open = socket !== undefined ? () => connectEngine(socket) : shared ? () => connectSharedEngine(shared) : () => spawnEngine(argv);
    this.engineName = socket ?? shared?.socketPath ?? this.engine.join(" ");
    this.transport = new Transport(open, (params) => this.dispatchEvent(params));
  }

  /** The id of the VM created by this client (kept after close() so remove() can use it). */
  get vmId(): string | undefined {
    return this.currentVmId;
  }

  /**
   * Starts the engine process (or connects to the resident engine) and checks that it speaks
   * this SDK's protocol. Idempotent; a closed client cannot be restarted.
   */
  start(): Promise<void> {
    if (this.closePromise) return Promise.reject(new MatchlockError("Client is closed"));
    this.startPromise ??= this.transport.start().then(async () => {
      this.ourEngine = await shakeHands(this.transport, this.engineName);
    });
    return this.startPromise;
  }

  /** Subscribes to the engine's `event` notifications (e.g. network requests); returns an unsubscribe function. */
  onEvent(listener: (event: SandboxEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** Creates the VM described by a Sandbox builder and starts the image's ENTRYPOINT + CMD in it, detached; returns its id. */
  launch(sandbox: Sandbox, opts?: CallOptions): Promise<string> {
    return this.create({ ...sandbox.options(), launchEntrypoint: true }, opts);
  }

  /**
   * Moves the sandbox's deadline: it stops `seconds` from now (0: no limit), whatever
   * `withTimeout` set. A matchlock extension (`set_timeout`).
   */
  async setTimeout(seconds: number, opts?: CallOptions): Promise<void> {
    await this.transport.request(Method.SET_TIMEOUT, { timeout_seconds: checkTimeoutSeconds("timeout (seconds)", seconds) }, opts);
  }

  /**
   * Creates (pulls, boots) the VM; returns its id. Options are validated locally first. Port
   * forwards are bound as part of the create by our engine (a bind failure undoes the create);
   * an upstream engine gets a `port_forward` right after it, as upstream's SDK sends.
   */
  async create(options: CreateOptions, opts?: CallOptions): Promise<string> {
    const checked = checkCreateOptions(options);
    const params = toCreateParams(checked);
    await this.start(); // lazily, so `new Client()` + `launch()` just works
    await this.stopHooks();
    const { hooks } = networkInterceptionWire(checked.networkInterception);
    if (hooks.size > 0) {
      const server = (this.hookServer = await NetworkHookServer.start(hooks));
      ((params.network as Record<string, unknown>).interception as Record<string, unknown>).callback_socket = server.socketPath;
      void this.transport.ended.then(() => this.stopHooks());
    }
    let result: JsonObject;
    try {
      result = await this.transport.request(Method.CREATE, this.ourEngine ? withCreateForwards(params, checked) : params, opts);
    } catch (err) {
      await this.stopHooks();
      throw err;
    }
    if (typeof result.id !== "string" || result.id === "") {
      await this.stopHooks();
      throw new MatchlockError(`create returned no VM id: ${JSON.stringify(result)}`);
    }
    this.currentVmId = result.id;
    if (!this.ourEngine && checked.portForwards?.length) await this.forward(checked.portForwards, checked.portForwardAddresses);
    return result.id;
  }

  /**
   * Forwards host ports to the guest's 127.0.0.1: each spec is "[LOCAL:]REMOTE" (one number:
   * the same port on both sides), listening on 127.0.0.1. Replaces the forwards set before.
   */
  portForward(...specs: string[]): Promise<PortForwardBinding[]> {
    return this.portForwardWithAddresses(undefined, ...specs);
  }

  /** portForward() listening on these host addresses (undefined or empty: 127.0.0.1). */
  async portForwardWithAddresses(addresses: string[] | undefined, ...specs: string[]): Promise<PortForwardBinding[]> {
    const forwards = specs.map((spec) => {
      if (typeof spec !== "string") throw new MatchlockError(`port forward spec must be a string "[LOCAL:]REMOTE", got ${JSON.stringify(spec)}`, { kind: "invalid_argument" });
      try {
        return parsePortSpec(spec);
      } catch (err) {
        throw new MatchlockError((err as Error).message, { kind: "invalid_argument" });
      }
    });
    const checkedAddresses = addresses === undefined ? undefined : checkForwardAddresses(addresses);
    if (forwards.length === 0) return []; // as upstream's SDK: nothing to forward, nothing sent
    return this.forward(forwards, checkedAddresses);
  }

  /**
   * Allows more hosts at runtime (spec 5.5): new DNS answers, connections and requests follow at
   * once. Each argument may hold several hosts separated by commas. Needs a sandbox whose network
   * is sealed (allowHost, addSecret or withNetworkInterception at create).
   */
  async allowListAdd(...hosts: string[]): Promise<AllowListAddResult> {
    const result = await this.transport.request(Method.ALLOW_LIST_ADD, { hosts: checkAllowListHosts(hosts) });
    return { added: stringList(result.added), allowedHosts: stringList(result.allowed_hosts) };
  }

  /** Removes hosts from the allow-list at runtime; open connections keep going. An empty allow-list denies every host (but secrets' hosts). */
  async allowListDelete(...hosts: string[]): Promise<AllowListDeleteResult> {
    const result = await this.transport.request(Method.ALLOW_LIST_DELETE, { hosts: checkAllowListHosts(hosts) });
    return { removed: stringList(result.removed), allowedHosts: stringList(result.allowed_hosts) };
  }

  private async forward(forwards: PortForward[], addresses: string[] | undefined): Promise<PortForwardBinding[]> {
    const result = await this.transport.request(Method.PORT_FORWARD, toPortForwardParams(forwards, addresses));
    return toPortForwardBindings(result);
  }

  /** Runs `sh -c command` in the guest and buffers its output. A non-zero exit is a result, not an error. */
  async exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const result = await this.transport.request(Method.EXEC, execParams(command, opts), opts);
    return toExecResult(result);
  }

  /** exec() in `workingDir` (upstream SDK's name; "" = the default directory). */
  execWithDir(command: string, workingDir = "", opts: CallOptions = {}): Promise<ExecResult> {
    return this.exec(command, { ...opts, workingDir });
  }

  /** execStream() in `workingDir` with these targets (upstream SDK's name). */
  execStreamWithDir(command: string, workingDir = "", stdout?: OutputTarget, stderr?: OutputTarget, opts: CallOptions = {}): Promise<ExecStreamResult> {
    return this.execStream(command, { ...opts, workingDir, ...(stdout ? { stdout } : {}), ...(stderr ? { stderr } : {}) });
  }

  /** Like exec(), but delivers output as it arrives to `stdout`/`stderr` (streams or callbacks). */
  execStream(command: string, opts: ExecStreamOptions = {}): Promise<ExecStreamResult> {
    return this.streamed(Method.EXEC_STREAM, execParams(command, opts), opts, {
      [Notification.EXEC_STDOUT]: opts.stdout,
      [Notification.EXEC_STDERR]: opts.stderr,
    });
  }

  /** execPipe() in `workingDir` with this stdin and these targets (upstream SDK's name). */
  execPipeWithDir(command: string, workingDir = "", stdin?: StreamReader, stdout?: OutputTarget, stderr?: OutputTarget, opts: CallOptions = {}): Promise<ExecPipeResult> {
    return this.execPipe(command, { ...opts, workingDir, ...(stdin ? { stdin } : {}), ...(stdout ? { stdout } : {}), ...(stderr ? { stderr } : {}) });
  }

  /**
   * Like execStream(), with the command's stdin fed from `stdin` (a Readable or an iterable of
   * chunks) at the command's pace; it reads EOF when `stdin` ends (at once without one).
   */
  async execPipe(command: string, opts: ExecPipeOptions = {}): Promise<ExecPipeResult> {
    let pumped: Promise<unknown> = Promise.resolve();
    const result = await this.withInput(false, execParams(command, opts), opts, {
      [Notification.PIPE_STDOUT]: opts.stdout,
      [Notification.PIPE_STDERR]: opts.stderr,
    }, (input) => (pumped = feed(input, opts.stdin)));
    await failedStdin(pumped);
    return result;
  }

  /**
   * Runs the command on a terminal of its own (`rows` x `cols`, default 24 x 80): what `stdin`
   * gives is typed into it, and everything it prints comes to `stdout`. Given process.stdin and
   * process.stdout (TTYs), the local terminal is in raw mode while it runs and its size and
   * resizes are passed on: `await client.execInteractive("sh", { stdin: process.stdin, stdout: process.stdout })`.
   */
  async execInteractive(command: string, opts: ExecInteractiveOptions = {}): Promise<ExecInteractiveResult> {
    const local = sizeOf(opts.stdout);
    const params = execParams(command, opts);
    params.rows = terminalDimension("rows", opts.rows) ?? local?.[0] ?? 24;
    params.cols = terminalDimension("cols", opts.cols) ?? local?.[1] ?? 80;
    let pumped: Promise<unknown> = Promise.resolve();
    const leaveRawMode = enterRawMode(opts.stdin);
    try {
      const result = await this.withInput(true, params, opts, { [Notification.TTY_STDOUT]: opts.stdout }, (input) => {
        pumped = feed(input, opts.stdin);
        if (opts.resize) void pumpResizes(input, opts.resize).catch(() => undefined);
        else input.whenStopped(followResizes(opts.stdout, (rows, cols) => input.resize(rows, cols)));
      });
      await failedStdin(pumped);
      return result;
    } finally {
      leaveRawMode();
    }
  }

  /**
   * Starts a command and returns at once (once it runs) with a handle: its pid, `stdout` and
   * `stderr` Readables, a `stdin` Writable, `wait()` and `kill(signal)`. Many may run at once.
   * Output is flow-controlled: read both streams (or `resume()` them), or the commands of this
   * client stall once one of them fills.
   */
  async spawn(command: string, opts: SpawnOptions = {}): Promise<ProcessHandle> {
    const size = opts.tty === true ? { rows: 24, cols: 80 } : opts.tty || undefined;
    const params = execParams(command, opts);
    if (size) {
      params.rows = terminalDimension("rows", size.rows) ?? 24;
      params.cols = terminalDimension("cols", size.cols) ?? 80;
    }
    const stdout = new PassThrough({ highWaterMark: SPAWN_OUTPUT_HIGH_WATER });
    const stderr = new PassThrough({ highWaterMark: SPAWN_OUTPUT_HIGH_WATER });
    let started!: (v: { input: ExecInputChannel; pid: number | undefined }) => void;
    const ready = new Promise<{ input: ExecInputChannel; pid: number | undefined }>((resolve) => (started = resolve));
    const targets = size ? { [Notification.TTY_STDOUT]: stdout } : { [Notification.PIPE_STDOUT]: stdout, [Notification.PIPE_STDERR]: stderr };
    const done = this.withInput(size !== undefined, params, opts, targets, (input, pid) => started({ input, pid }));
    // However the command ends, its streams end; a failure is wait()'s to report (an 'error' on a
    // stream nobody listens to would crash the caller's process).
    const endStreams = () => {
      stdout.end();
      stderr.end();
    };
    void done.then(endStreams, endStreams);
    const { input, pid } = await Promise.race([ready, done.then(() => { throw new MatchlockError("the command ended before it was reported started"); })]);
    if (pid === undefined) throw new MatchlockError("this engine does not report process ids (exec_pipe.ready without pid): upgrade it");
    return new ProcessHandle(pid, input, stdout, stderr, done);
  }

  /** Runs an exec_pipe/exec_tty; `onReady` gets its input channel once the command runs. */
  private withInput(
    tty: boolean, params: JsonObject, opts: CallOptions, targets: Record<string, OutputTarget | undefined>,
    onReady: (input: ExecInputChannel, pid: number | undefined) => void,
  ): Promise<ExecStreamResult> {
    const readyMethod = tty ? Notification.TTY_READY : Notification.PIPE_READY;
    let input: ExecInputChannel | undefined;
    return this.streamed(tty ? Method.EXEC_TTY : Method.EXEC_PIPE, params, opts, targets, (method, p) => {
      if (method !== readyMethod || input || typeof p.id !== "number") return;
      input = new ExecInputChannel(this.transport, tty, p.id);
      onReady(input, typeof p.pid === "number" ? p.pid : undefined);
    }).finally(() => input?.stop());
  }

  /** A request whose output notifications go to `targets` (by notification method); others to `other`. */
  private async streamed(
    method: string, params: JsonObject, opts: CallOptions, targets: Record<string, OutputTarget | undefined>,
    other?: (method: string, params: JsonObject) => void,
  ): Promise<ExecStreamResult> {
    const sinks: Record<string, OutputSink> = {};
    for (const [name, target] of Object.entries(targets)) sinks[name] = new OutputSink(target);
    let result: JsonObject;
    try {
      result = await this.transport.request(method, params, {
        timeoutMs: opts.timeoutMs,
        signal: opts.signal,
        // A full target returns a promise: the transport reads no more from the engine until it settles.
        onNotification: (name, p) => {
          const sink = sinks[name];
          if (sink) return sink.write(decodeBase64(p.data));
          other?.(name, p);
          return undefined;
        },
      });
    } finally {
      // Output that arrived before a failure is still delivered.
      await Promise.all(Object.values(sinks).map((sink) => sink.end()));
    }
    const targetError = Object.values(sinks).find((sink) => sink.error !== undefined)?.error;
    if (targetError !== undefined) {
      throw new MatchlockError(`${method} output target failed: ${String(targetError)}`, { cause: targetError });
    }
    return toExecStreamResult(result);
  }

  /**
   * The sandbox's log, decoded as UTF-8: its engine's messages (the micro-VM's console, runsc's)
   * and its entrypoint's output. Works after close() too, for the sandbox this client had.
   */
  async log(opts?: CallOptions): Promise<string> {
    const result = await this.transport.request(Method.LOG, {}, opts);
    return decodeBase64(result.content).toString("utf8");
  }

  /**
   * Writes the log to `stdout`, then what is appended to it, until the sandbox stops (or the
   * call is cancelled: `signal`, `timeoutMs`). A full target Writable holds the stream back.
   */
  async logStream(opts: LogStreamOptions = {}): Promise<void> {
    const sink = new OutputSink(opts.stdout);
    try {
      await this.transport.request(Method.LOG_STREAM, {}, {
        timeoutMs: opts.timeoutMs,
        signal: opts.signal,
        onNotification: (method, params) => (method === Notification.LOG_STREAM_DATA ? sink.write(decodeBase64(params.data)) : undefined),
      });
    } finally {
      await sink.end();
    }
    if (sink.error !== undefined) throw new MatchlockError(`log_stream output target failed: ${String(sink.error)}`, { cause: sink.error });
  }

  /** writeFile() with this mode (upstream SDK's name). */
  writeFileMode(path: string, content: FileContent, mode: number, opts: CallOptions = {}): Promise<void> {
    return this.writeFile(path, content, { ...opts, mode });
  }

  /**
   * Writes a file in the guest; strings are encoded as UTF-8. Content of up to 1 MiB goes in one
   * `write_file` message; larger content and streams (a Node Readable, or any AsyncIterable of
   * Uint8Array/string chunks) are streamed in chunks with bounded memory, into a temporary file
   * that is renamed over `path` only once everything arrived.
   */
  async writeFile(path: string, content: FileContent, opts: WriteFileOptions = {}): Promise<void> {
    const mode = opts.mode ?? 0o644;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0xffffffff) {
      throw new MatchlockError(`mode must be a uint32 permission value (e.g. 0o644), got ${mode}`, { kind: "invalid_argument" });
    }
    checkPath(path);
    if (typeof content !== "string" && !(content instanceof Uint8Array)) {
      if (content === null || typeof content !== "object" || !(Symbol.asyncIterator in content)) {
        throw new MatchlockError("writeFile content must be a string, a Uint8Array/Buffer, or an AsyncIterable (e.g. a Readable)", { kind: "invalid_argument" });
      }
      try {
        await writeChunked(this.transport, path, content, mode, opts); // no slot: its source decides when it ends
      } catch (err) {
        if (!isMethodNotFound(err)) throw err;
        throw new MatchlockError(
          "this matchlock engine does not support streamed writes (write_file_open: Method not found): upgrade it, or pass the content as a Buffer of at most about 7.5 MB",
          { cause: err },
        );
      }
      return;
    }
    const bytes = typeof content === "string" ? Buffer.from(content, "utf8") : Buffer.from(content.buffer, content.byteOffset, content.byteLength);
    if (bytes.length > CHUNK_BYTES) {
      try {
        await this.transferSlots.run(() => writeChunked(this.transport, path, [bytes], mode, opts));
        return;
      } catch (err) {
        if (!isMethodNotFound(err)) throw err; // an older engine: one write_file, within its limit
      }
    }
    await this.transport.request(Method.WRITE_FILE, { path, content: new Base64Data(bytes), mode }, opts);
  }

  /** Reads a whole guest file into a Buffer (transferred in chunks; see readFileStream for big files). */
  async readFile(path: string, opts?: CallOptions): Promise<Buffer> {
    checkPath(path);
    const parts: Buffer[] = [];
    try {
      await this.transferSlots.run(async () => {
        for await (const part of readChunked(this.transport, path, opts ?? {})) parts.push(part);
      });
    } catch (err) {
      if (!isMethodNotFound(err) || parts.length > 0) throw err;
      const result = await this.transport.request(Method.READ_FILE, { path }, opts); // an older engine
      return decodeBase64(result.content);
    }
    return Buffer.concat(parts);
  }

  /**
   * Streams a guest file: the Readable asks the engine for more only as it is consumed, so a
   * file of any size passes through a few MiB of memory. Errors (missing path, sandbox closed)
   * arrive as the stream's 'error'; destroying the stream stops the transfer in the guest.
   */
  readFileStream(path: string, opts?: CallOptions): Readable {
    checkPath(path);
    const transport = this.transport;
    async function* chunks(): AsyncGenerator<Buffer> {
      try {
        yield* readChunked(transport, path, opts ?? {});
      } catch (err) {
        if (!isMethodNotFound(err)) throw err;
        // An older engine has only read_file: the whole file in one message.
        yield decodeBase64((await transport.request(Method.READ_FILE, { path }, opts)).content);
      }
    }
    return Readable.from(chunks(), { objectMode: false, highWaterMark: CHUNK_BYTES });
  }

  async listFiles(path: string, opts?: CallOptions): Promise<FileInfo[]> {
    const result = await this.transport.request(Method.LIST_FILES, { path: checkPath(path) }, opts);
    return toFileInfos(result);
  }

  /**
   * Removes a file, a symlink (not what it points to) or an empty directory; `recursive: true`
   * removes a directory with everything in it. A matchlock extension (`remove_file`).
   */
  async removeFile(path: string, opts: RemoveFileOptions = {}): Promise<void> {
    const params: JsonObject = { path: checkPath(path) };
    if (opts.recursive !== undefined) params.recursive = checkBoolean("recursive", opts.recursive);
    await this.transport.request(Method.REMOVE_FILE, params, opts);
  }

  /**
   * Makes a directory (mode 0o755 unless `mode` says otherwise, exactly); `parents: true` makes
   * the missing ones above it too and takes an existing directory as done. A matchlock extension (`make_dir`).
   */
  async makeDir(path: string, opts: MakeDirOptions = {}): Promise<void> {
    const params: JsonObject = { path: checkPath(path) };
    if (opts.parents !== undefined) params.parents = checkBoolean("parents", opts.parents);
    if (opts.mode !== undefined) {
      if (!Number.isInteger(opts.mode) || opts.mode < 0 || opts.mode > 0o7777) {
        throw new MatchlockError(`mode must be permission bits from 0 to 0o7777, got ${opts.mode}`, { kind: "invalid_argument" });
      }
      params.mode = opts.mode;
    }
    await this.transport.request(Method.MAKE_DIR, params, opts);
  }

  /** Renames (moves) a file or directory inside the guest, atomically (rename(2)). A matchlock extension (`rename_file`). */
  async renameFile(oldPath: string, newPath: string, opts?: CallOptions): Promise<void> {
    await this.transport.request(Method.RENAME_FILE, { old_path: checkPath(oldPath), new_path: checkPath(newPath) }, opts);
  }

  /**
   * The file at `path` (a symlink as the link itself), as listFiles describes entries, with its
   * modification time. A missing path rejects (RPCError, isFileError()). A matchlock extension (`stat_file`).
   */
  async statFile(path: string, opts?: CallOptions): Promise<FileInfo> {
    const result = await this.transport.request(Method.STAT_FILE, { path: checkPath(path) }, opts);
    return toFileInfo(result.file);
  }

  /**
   * Shuts the VM and the engine down. Idempotent. Sends `close` (with `timeout_seconds` when
   * `timeoutSeconds` > 0), waits a bounded time for the reply, closes stdin, waits for the
   * process to exit and SIGKILLs it if it does not. Rejects only if the engine reported an
   * error for `close`; the process is gone either way.
   */
  close(timeoutSeconds = 0): Promise<void> {
    if (!this.closePromise) {
      if (!(timeoutSeconds >= 0 && Number.isFinite(timeoutSeconds))) {
        return Promise.reject(new MatchlockError(`close timeout must be >= 0 seconds, got ${timeoutSeconds}`, { kind: "invalid_argument" }));
      }
      this.closePromise = this.shutdown(timeoutSeconds);
    }
    return this.closePromise;
  }

  /** Deletes the stopped VM's state with `<engine> rm <vmId>` (through sudo with useSudo). No-op without a VM id. */
  async remove(): Promise<void> {
    const id = this.currentVmId;
    if (!id) return;
    const argv = rmCommand(id, this.engine, this.useSudo);
    let result;
    try {
      result = await runCommand(argv);
    } catch (err) {
      throw new MatchlockError(`Cannot run ${argv.join(" ")}: ${(err as Error).message}`, { cause: err });
    }
    if (result.code !== 0) {
      const status = result.signal ? `killed by ${result.signal}` : `exit code ${result.code}`;
      throw new MatchlockError(`${argv.join(" ")} failed (${status})${result.stderr ? `: ${result.stderr}` : ""}`);
    }
    this.currentVmId = undefined;
  }

  /**
   * Creates a named volume (an ext4 disk of `sizeMb` MB that outlives sandboxes) with
   * `<engine> volume create NAME --size MB --json`; attach it with Sandbox.withDisk(info.path, guestPath).
   */
  volumeCreate(name: string, sizeMb = 10240): Promise<VolumeInfo> {
    return volumeCreate(this.engine, name, sizeMb);
  }

  /** The named volumes (`<engine> volume ls --json`). */
  volumeList(): Promise<VolumeInfo[]> {
    return volumeList(this.engine);
  }

  /** Deletes a named volume and its data (`<engine> volume rm NAME`); refused while a sandbox has it attached. */
  volumeRemove(name: string): Promise<void> {
    return volumeRemove(this.engine, name);
  }

  /**
   * `await using`: closes the client and removes the sandbox it made (its stopped record and
   * state directory), unless Config.keepOnDispose asks to keep them for inspection (the shared
   * engine's too: it has this client's environment). A resident engine of the user's own
   * (Config.engineSocket) cleans its sandboxes up itself when the connection ends.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
    if (!this.keepOnDispose && this.socket === undefined) await this.remove();
  }

  private async shutdown(timeoutSeconds: number): Promise<void> {
    if (this.startPromise) await this.startPromise.catch(() => undefined);
    let closeError: RPCError | undefined;
    if (this.transport.running) {
      // The engine tears the VM down on `close` (also at timeout 0, unlike the seed SDKs'
      // bare SIGKILL), so wait for that, but never forever.
      const reply = this.transport.request(Method.CLOSE, timeoutSeconds > 0 ? { timeout_seconds: timeoutSeconds } : {});
      reply.catch(() => undefined); // it may settle after we stopped waiting
      const waitMs = timeoutSeconds > 0 ? timeoutSeconds * 1000 + CLOSE_GRACE_MS : CLOSE_REPLY_WAIT_MS;
      const timer = new Promise<void>((resolve) => setTimeout(resolve, waitMs).unref());
      try {
        await Promise.race([reply, timer]);
      } catch (err) {
        if (err instanceof RPCError) closeError = err;
      }
    }
    await this.transport.shutdown(timeoutSeconds * 1000 + EXIT_GRACE_MS);
    await this.stopHooks();
    if (closeError) throw closeError;
  }

  private async stopHooks(): Promise<void> {
    const server = this.hookServer;
    this.hookServer = undefined;
    await server?.close();
  }

  private dispatchEvent(params: JsonObject): void {
    for (const listener of this.eventListeners) {
      try {
        listener(params as SandboxEvent);
      } catch {
        // one faulty listener must not stop the others or the reader
      }
    }
  }
}

/** Output a spawned command's stream holds before the engine is told to wait. */
const SPAWN_OUTPUT_HIGH_WATER = 256 * 1024;

/** Feeds stdin; a failing source ends the command's input (EOF) and is reported after it ends. */
function feed(input: ExecInputChannel, stdin: StreamReader | undefined): Promise<unknown> {
  return pumpStdin(input, stdin).then(() => undefined, (err: unknown) => {
    input.end();
    return { failed: err };
  });
}

async function failedStdin(pumped: Promise<unknown>): Promise<void> {
  const outcome = (await Promise.race([pumped, Promise.resolve(undefined)])) as { failed?: unknown } | undefined;
  if (outcome && "failed" in outcome) throw new MatchlockError(`stdin source failed: ${String(outcome.failed)}`, { cause: outcome.failed });
}

/** A terminal size given by the caller: undefined (or not positive, as upstream) is the default. */
function terminalDimension(name: string, value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || Number.isNaN(value)) throw new MatchlockError(`${name} must be a number`, { kind: "invalid_argument" });
  const n = Math.trunc(value);
  if (n <= 0) return undefined;
  if (n > 0xffff) throw new MatchlockError(`${name} must be at most 65535, got ${value}`, { kind: "invalid_argument" });
  return n;
}

function checkBoolean(name: string, value: unknown): boolean {
  if (typeof value !== "boolean") throw new MatchlockError(`${name} must be true or false, got ${JSON.stringify(value)}`, { kind: "invalid_argument" });
  return value;
}

function checkPath(path: string): string {
  if (typeof path !== "string" || path === "") throw new MatchlockError("path is required", { kind: "invalid_argument" });
  return path;
}

function execParams(command: string, opts: ExecOptions): JsonObject {
  if (typeof command !== "string") throw new MatchlockError("command must be a string", { kind: "invalid_argument" });
  const params: JsonObject = { command };
  if (opts.workingDir) params.working_dir = opts.workingDir;
  if (opts.user !== undefined) {
    if (typeof opts.user !== "string") throw new MatchlockError("user must be a string");
    if (opts.user) params.user = opts.user;
  }
  return params;
}
