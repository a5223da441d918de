// The methods of one `matchlock rpc` session, which owns at most one sandbox.
import { z } from "zod";
import { Base64Data } from "../../protocol/base64.js";
import { EngineError } from "../../protocol/errors.js";
import { ErrorCode, MAX_TIMEOUT_SECONDS, type RequestId } from "../../protocol/rpc.js";
import { HANDSHAKE_METHOD, handshakeResult } from "../../protocol/handshake.js";
import { CancelSwitch } from "../agent/cancel-switch.js";
import { createSandbox, engineCreateDeps, parseCreateParams, type CreateDeps } from "../sandbox/create.js";
import { CreateCancelledError, Sandbox } from "../sandbox/sandbox.js";
import { removeVmDir } from "../sandbox/state.js";
import { traceStartup } from "../trace/startup.js";
import type { MessageWriter } from "./writer.js";
import { FileTransfers } from "./file-transfers.js";
import { RpcError } from "./errors.js";
import { decode, decodeBase64 } from "./params.js";
import { FILE_OP_METHODS, Input, Method, Notification, TRANSFER_METHODS } from "../../protocol/methods.js";
import { handleFileOp } from "./file-ops.js";
import { logMethod, logStreamMethod } from "./logs.js";
import type { SandboxHub } from "../resident/sandbox-hub.js";
import type { WarmPool } from "../resident/warm-pool.js";
import type { NetworkEventSink } from "../net/events.js";
import { ExecInput, MAX_UNANSWERED_STDIN } from "../agent/exec-input.js";

/** How one kind of exec talks to the client: its output notifications and, for pipe/tty, its input. */
interface ExecKind {
  method: string;
  /** Output as notifications (else buffered into the result). */
  stream: boolean;
  stdout: string;
  stderr: string;
  input?: ExecInput;
}

const BUFFERED: ExecKind = { method: Method.EXEC, stream: false, stdout: "", stderr: "" };
const STREAMED: ExecKind = { method: Method.EXEC_STREAM, stream: true, stdout: Notification.EXEC_STDOUT, stderr: Notification.EXEC_STDERR };

/** An exec_pipe or exec_tty that takes input, by its request id. */
interface LiveInput {
  tty: boolean;
  input: ExecInput;
}
import { forwardAddressesSchema, forwardSchema, toForwardRequest } from "../ports/port-forward-params.js";
import type { PortForwards } from "../ports/port-forwards.js";

const execParams = z.strictObject({
  command: z.string().default(""),
  working_dir: z.string().optional(),
  // "uid", "uid:gid" or a name from the guest's /etc/passwd; empty = the image's user.
  user: z.string().optional(),
  // A matchlock extension: variables set over the sandbox's for this command only.
  env: z.record(z.string().regex(/^[^=\0]+$/, "must be a non-empty name without '=' or NUL"), z.string().regex(/^[^\0]*$/, "must not contain NUL")).optional(),
});
const uint16 = z.number().int().min(0).max(0xffff);
const ttyParams = execParams.extend({ rows: uint16.optional(), cols: uint16.optional() });
const inputTarget = z.number().int().nonnegative();
const stdinParams = z.strictObject({ id: inputTarget, data: z.string() });
const eofParams = z.strictObject({ id: inputTarget });
const resizeParams = z.strictObject({ id: inputTarget, rows: uint16, cols: uint16 });
const signalParams = z.strictObject({ id: inputTarget, signal: z.number().int().min(1).max(64) });
const pathParams = z.strictObject({ path: z.string() });
const writeParams = z.strictObject({
  path: z.string(),
  content: z.string(),
  mode: z.number().int().min(0).max(0xffffffff).optional(),
});
const closeParams = z.strictObject({ timeout_seconds: z.number().nonnegative().max(MAX_TIMEOUT_SECONDS).optional() });
// 0 clears the deadline; otherwise the sandbox stops that many seconds from now.
const setTimeoutParams = z.strictObject({ timeout_seconds: z.number().nonnegative().max(MAX_TIMEOUT_SECONDS) });
const cancelParams = z.strictObject({ id: z.number().int().nonnegative() });
const handshakeParams = z.strictObject({});
const attachParams = z.strictObject({ id: z.string() });
const detachParams = z.strictObject({});
const portForwardParams = z.strictObject({
  forwards: z.array(forwardSchema).nullish(),
  addresses: forwardAddressesSchema.nullish(),
  // A matchlock extension: forward to another session's sandbox of this (resident) engine.
  vm_id: z.string().optional(),
});

const allowListParams = z.strictObject({ hosts: z.array(z.string()).nullish() });

/** Finds a running sandbox of this engine by id (the resident engine's other sessions). */
export type SandboxFinder = (id: string) => Sandbox | undefined;

type Result = Record<string, unknown>;

export class Session {
  private sandbox: Sandbox | undefined;
  private lastId: string | undefined;
  closed = false;
  /** What `cancel` can stop, by request id: an exec's CancelSwitch or a create's AbortController. */
  private readonly cancels = new Map<RequestId, { abort(): void }>();
  private readonly transfers = new FileTransfers(() => this.current());
  /** Running exec_pipe/exec_tty commands, by the id of their request. */
  private readonly inputs = new Map<RequestId, LiveInput>();
  /** The request id of the `create` that made the current sandbox: cancelling it later undoes it. */
  private createdBy: RequestId | undefined;
  /** The create in progress, which a shutdown aborts and waits for (it undoes what it made). */
  private inCreate: { abort: AbortController; done: Promise<unknown> } | undefined;

  private readonly createDeps: CreateDeps;
  /** Port forwards this session holds on other sessions' sandboxes, by sandbox id. */
  private readonly foreignForwards = new Map<string, { sandbox: Sandbox; set: PortForwards }>();
  /** The sandbox is another session's (attach) or the hub's (detach): this session never stops it. */
  private attached = false;

  /** `hub`: the resident engine's sandboxes, which `attach` and `detach` need (a stdio session has none). */
  constructor(
    private readonly writer: MessageWriter, private readonly log: (line: string) => void, createDeps?: CreateDeps,
    private readonly findSandbox: SandboxFinder = () => undefined,
    private readonly hub?: SandboxHub,
    /** The resident engine's warm spare, which a create like the last one takes. */
    private readonly warmPool?: WarmPool,
  ) {
    this.createDeps = createDeps ?? engineCreateDeps(log);
  }

  /** The sandbox this session runs, once created (undefined after close). */
  get runningSandbox(): Sandbox | undefined {
    return this.sandbox;
  }

  /** The id of the sandbox being made, from the moment its record exists until the create ends. */
  private creatingId: string | undefined;
  /** Every sandbox id this session made a record for (the resident engine cleans up after them). */
  readonly recordIds = new Set<string>();

  /** The id of the sandbox this session owns (runs or is creating) now, if any. */
  get sandboxId(): string | undefined {
    return (this.attached ? undefined : this.sandbox?.id) ?? this.creatingId;
  }

  async handle(method: string, params: unknown, id: RequestId | null | undefined): Promise<Result> {
    // Undoing a finished create by a late cancel holds only until the client moves on: ids need
    // only be unique among requests in flight, so a later request may reuse the create's.
    if (method !== Method.CANCEL && method !== Method.CREATE) this.createdBy = undefined;
    switch (method) {
      case Method.CREATE: return this.create(params, id);
      case Method.CLOSE: return this.close(params);
      case Method.EXEC: return this.exec(params, id, BUFFERED);
      case Method.EXEC_STREAM: return this.exec(params, id, STREAMED);
      case Method.EXEC_PIPE: return this.execWithInput(params, id, false);
      case Method.EXEC_TTY: return this.execWithInput(params, id, true);
      case Method.EXEC_WRITE: return this.execWrite(params);
      case Method.EXEC_SIGNAL: return this.execSignal(params);
      case Method.WRITE_FILE: return this.writeFile(params);
      case Method.READ_FILE: return this.readFile(params);
      case Method.LIST_FILES: return this.listFiles(params);
      case Method.CANCEL: return this.cancel(params);
      case HANDSHAKE_METHOD:
        decode(handshakeParams, params ?? {}); // it takes none: any field is refused by name
        return { ...handshakeResult() };
      case Method.SET_TIMEOUT: return this.setTimeout(params);
      case Method.LOG: return logMethod(this.logSubject(), params);
      case Method.LOG_STREAM: return this.logStream(params, id);
      case Method.ATTACH: return this.attach(params);
      case Method.DETACH: return this.detach(params);
      case Method.PORT_FORWARD: return this.portForward(params);
      case Method.ALLOW_LIST_ADD: return this.changeAllowList("add", params);
      case Method.ALLOW_LIST_DELETE: return this.changeAllowList("delete", params);
      default:
        if (TRANSFER_METHODS.has(method)) return this.transfers.handle(method, params);
        if (FILE_OP_METHODS.has(method)) return handleFileOp(this.current(), method, params);
        throw new RpcError(ErrorCode.METHOD_NOT_FOUND, "Method not found");
    }
  }

  /** Stops the sandbox if there is one, aborting a create in progress. Safe to call any number of times. */
  async teardown(reason: string): Promise<void> {
    const pending = this.inCreate;
    if (pending) {
      this.log(`abandoning the create in progress: ${reason}`);
      pending.abort.abort();
      await pending.done.catch(() => {});
    }
    const sb = this.release();
    await this.closeForeignForwards();
    if (sb) {
      this.log(`stopping ${sb.id}: ${reason}`);
      await sb.close().catch((err) => this.log(`teardown of ${sb.id} failed: ${(err as Error).message}`));
      this.hub?.remove(sb.id);
    }
  }

  /** Lets go of the session's sandbox; returns it if this session owns it (and must stop it). */
  private release(): Sandbox | undefined {
    const sb = this.sandbox;
    this.sandbox = undefined;
    this.transfers.abortAll();
    const owned = this.attached ? undefined : sb;
    this.attached = false;
    return owned;
  }

  private async create(params: unknown, id: RequestId | null | undefined): Promise<Result> {
    const request = parseCreateParams(params);
    if (this.sandbox) {
      throw new RpcError(ErrorCode.VM_FAILED, `this session already has sandbox ${this.sandbox.id}: close it first (one sandbox per session)`);
    }
    const { config } = request;
    traceStartup("create: request parsed");
    // A client that gives up (timeout, abort) cancels its create: the server reads `cancel`
    // while a create runs, and what was being made is torn down and its record removed.
    // A shutdown (SIGTERM, EOF, the client gone) aborts it the same way.
    const abort = new AbortController();
    const cancellable = id !== undefined && id !== null;
    if (cancellable) this.cancels.set(id, abort);
    const onEvent: NetworkEventSink = (e) => void this.writer.notify(Notification.EVENT, { type: "network", timestamp: Math.floor(Date.now() / 1000), network: e });
    const onRecord = (made: string) => {
      this.creatingId = made;
      this.recordIds.add(made);
    };
    const making = (async () => {
      const spare = await this.warmPool?.take(request, { onEvent, onRecord }, abort.signal);
      const sb = spare ?? await createSandbox(request, {
        ...this.createDeps,
        onEvent,
        // File events carry milliseconds (spec 5.8), network events seconds.
        // A client slower than the guest's file operations holds up the sandbox's channel (and
        // the guest's bounded event queue then drops), rather than growing the engine's buffer.
        onFileEvent: (e) => this.writer.notify(Notification.EVENT, { type: "file", timestamp: Date.now(), file: e }),
        onRecord,
      }, abort.signal);
      if (abort.signal.aborted) {
        // Aborted just as it finished: nobody will learn this id, so undo it as a cancel would.
        const undone = await this.undoCreate(sb).then(() => true, () => false); // a failure is logged
        throw new CreateCancelledError(`create cancelled: sandbox ${sb.id} ${undone ? "was stopped and its state removed" : "could not be stopped; its record stays for gc"}`);
      }
      this.sandbox = sb; // here, not after `await making`: a teardown waiting on it must find it
      this.hub?.add(sb);
      this.warmPool?.watch(sb, request);
      return sb;
    })();
    this.inCreate = { abort, done: making };
    let sb: Sandbox;
    try {
      sb = await making;
    } finally {
      if (cancellable) this.cancels.delete(id);
      this.inCreate = undefined;
      this.creatingId = undefined;
    }
    traceStartup("create: done");
    this.createdBy = id ?? undefined;
    this.lastId = sb.id;
    this.log(`created ${sb.id} from ${config.image}`);
    return { id: sb.id };
  }

  private async close(params: unknown): Promise<Result> {
    const timeout = decode(closeParams, params ?? {}).timeout_seconds ?? 0;
    this.closed = true;
    const sb = this.release();
    await this.closeForeignForwards();
    // timeout 0 is "no deadline" in the spec; our stop is always bounded, so give it a short grace.
    if (sb) {
      await sb.close(timeout > 0 ? timeout * 1000 : 2000);
      this.hub?.remove(sb.id);
    }
    return {};
  }

  private logSubject() {
    return { sandbox: this.sandbox, lastId: this.lastId };
  }

  private async logStream(params: unknown, id: RequestId | null | undefined): Promise<Result> {
    const abort = new AbortController();
    const cancellable = id !== undefined && id !== null && !this.cancels.has(id);
    if (cancellable) this.cancels.set(id, abort);
    try {
      return await logStreamMethod(this.logSubject(), params, id, this.writer, abort.signal);
    } finally {
      if (cancellable) this.cancels.delete(id);
    }
  }

  /** A matchlock extension: serve a running sandbox of this resident engine, which another session (or none) owns. */
  private async attach(params: unknown): Promise<Result> {
    const p = decode(attachParams, params);
    if (!this.hub) throw new RpcError(ErrorCode.VM_FAILED, "attach needs a resident engine (matchlock serve): this engine serves one client and its sandbox only", "unsupported");
    if (this.sandbox || this.creatingId) throw new RpcError(ErrorCode.VM_FAILED, `this session already has sandbox ${this.sandboxId ?? this.sandbox?.id}: attach from a new session`);
    const sb = this.hub.find(p.id);
    if (!sb) throw new RpcError(ErrorCode.VM_FAILED, `VM ${p.id} is not running in this engine`, "not_found");
    this.sandbox = sb;
    this.attached = true;
    this.lastId = sb.id;
    return { id: sb.id };
  }

  /** A matchlock extension: this session's sandbox outlives the connection, as the resident engine's own. */
  private async detach(params: unknown): Promise<Result> {
    decode(detachParams, params ?? {});
    if (!this.hub) throw new RpcError(ErrorCode.VM_FAILED, "detach needs a resident engine (matchlock serve): a sandbox of this engine ends with its session", "unsupported");
    const sb = this.current();
    if (!this.attached) this.hub.detach(sb);
    this.attached = true;
    this.log(`detached ${sb.id}: it runs until matchlock kill or its timeout`);
    return { id: sb.id };
  }

  /** A matchlock extension (E2B's setTimeout): moves the sandbox's deadline, counted from now. */
  private async setTimeout(params: unknown): Promise<Result> {
    const p = decode(setTimeoutParams, params);
    this.current().setDeadline(p.timeout_seconds > 0 ? p.timeout_seconds : undefined);
    return {};
  }

  /**
   * Replaces this session's forwards on its sandbox (or, with `vm_id`, on another session's
   * sandbox of this engine) with listeners on every address x forward (spec 5.6).
   */
  private async portForward(params: unknown): Promise<Result> {
    const p = decode(portForwardParams, params ?? {});
    if (!p.forwards || p.forwards.length === 0) throw new RpcError(ErrorCode.INVALID_PARAMS, "forwards is required");
    const { forwards, addresses } = toForwardRequest(p.forwards, p.addresses);
    const set = p.vm_id === undefined || p.vm_id === this.sandbox?.id ? this.current().ports : this.foreignSet(p.vm_id);
    return { bindings: await set.replace(forwards, addresses) };
  }

  /**
   * allow_list_add / allow_list_delete (spec 5.5). The lists are `null` when empty, as upstream
   * sends them; here an empty allow-list denies every host but the secrets' (docs/network-seal.md).
   */
  private async changeAllowList(change: "add" | "delete", params: unknown): Promise<Result> {
    const p = decode(allowListParams, params ?? {});
    const hosts = (p.hosts ?? []).map((h) => h.trim()).filter(Boolean);
    if (hosts.length === 0) throw new RpcError(ErrorCode.INVALID_PARAMS, "hosts is required");
    const { changed, allowList } = await this.current().changeAllowList(change, hosts);
    const list = (l: readonly string[]) => (l.length > 0 ? [...l] : null);
    return change === "add"
      ? { added: [...changed], allowed_hosts: list(allowList) }
      : { removed: list(changed), allowed_hosts: list(allowList) };
  }

  private foreignSet(id: string): PortForwards {
    const sandbox = this.findSandbox(id);
    if (!sandbox || sandbox.lost) {
      throw new RpcError(ErrorCode.VM_FAILED, `VM ${id} is not running in this engine: port forwards reach the sandboxes of the engine that runs them (a resident engine, \`matchlock serve\`, serves them to every client)`);
    }
    const held = this.foreignForwards.get(id);
    if (held?.sandbox === sandbox) return held.set;
    const set = sandbox.openPortForwards(this.log);
    this.foreignForwards.set(id, { sandbox, set });
    return set;
  }

  private async closeForeignForwards(): Promise<void> {
    const held = [...this.foreignForwards.values()];
    this.foreignForwards.clear();
    await Promise.all(held.map(({ sandbox, set }) => sandbox.closePortForwards(set)));
  }

  private current(): Sandbox {
    if (!this.sandbox) {
      throw new RpcError(ErrorCode.VM_FAILED, this.lastId ? `VM ${this.lastId} is closed` : "VM not created");
    }
    const lost = this.sandbox.lost;
    if (lost) throw new RpcError(ErrorCode.VM_FAILED, `sandbox ${this.sandbox.id} is lost: ${lost.message}`, lost instanceof EngineError ? lost.kind : "sandbox_lost");
    return this.sandbox;
  }

  /**
   * exec_pipe / exec_tty: the input queue is registered before anything else (input sent early
   * is kept); `ready` (with the command's pid, a matchlock extension) follows once it runs.
   */
  private async execWithInput(params: unknown, id: RequestId | null | undefined, tty: boolean): Promise<Result> {
    const method = tty ? Method.EXEC_TTY : Method.EXEC_PIPE;
    if (id === undefined || id === null) throw new RpcError(ErrorCode.INVALID_REQUEST, `${method} requires request id`);
    const p: z.infer<typeof ttyParams> = decode(tty ? ttyParams : execParams, params);
    if (this.inputs.has(id)) throw new RpcError(ErrorCode.INVALID_REQUEST, `request id ${id} is already used by a running ${method}`);
    const input = new ExecInput(tty ? { rows: p.rows || 24, cols: p.cols || 80 } : undefined);
    this.inputs.set(id, { tty, input });
    input.onStarted = (pid) => void this.writer.notify(tty ? Notification.TTY_READY : Notification.PIPE_READY, { id, pid });
    const kind: ExecKind = tty
      ? { method, stream: true, stdout: Notification.TTY_STDOUT, stderr: Notification.TTY_STDOUT, input }
      : { method, stream: true, stdout: Notification.PIPE_STDOUT, stderr: Notification.PIPE_STDERR, input };
    try {
      return await this.exec(p, id, kind, true);
    } finally {
      input.close();
      if (this.inputs.get(id)?.input === input) this.inputs.delete(id);
    }
  }

  /**
   * exec_pipe.stdin and the other input messages: handled here, in the reader, in order, and
   * never answered. A promise means "the queue is full": the reader waits for it (as upstream).
   */
  input(method: string, params: unknown): Promise<void> | undefined {
    const tty = method.startsWith("exec_tty.");
    try {
      switch (method) {
        case Input.PIPE_STDIN:
        case Input.TTY_STDIN: {
          const p = decode(stdinParams, params);
          return this.liveInput(p.id, tty)?.write(decodeBase64(p.data));
        }
        case Input.PIPE_STDIN_EOF:
        case Input.TTY_STDIN_EOF:
          this.liveInput(decode(eofParams, params).id, tty)?.end();
          return undefined;
        case Input.TTY_RESIZE: {
          const p = decode(resizeParams, params);
          if (p.rows > 0 && p.cols > 0) this.liveInput(p.id, true)?.resize({ rows: p.rows, cols: p.cols });
          return undefined;
        }
      }
    } catch (err) {
      // No reply is possible: say it where the operator sees it.
      this.log(`ignored ${method}: ${(err as Error).message}`);
    }
    return undefined;
  }

  /** Unknown targets are ignored (the command may just have ended), as the spec says. */
  private liveInput(id: RequestId, tty: boolean): ExecInput | undefined {
    const live = this.inputs.get(id);
    return live && live.tty === tty ? live.input : undefined;
  }

  /** exec_write: like exec_pipe.stdin, but answered once the command can take more. */
  private async execWrite(params: unknown): Promise<Result> {
    const p = decode(stdinParams, params);
    const live = this.inputs.get(p.id);
    if (!live) throw new RpcError(ErrorCode.EXEC_FAILED, `no running exec_pipe or exec_tty has request id ${p.id}: its stdin is closed`, "not_found");
    if (live.input.queuedBytes > MAX_UNANSWERED_STDIN) {
      throw new RpcError(ErrorCode.INVALID_REQUEST, `exec_write refused: more than ${MAX_UNANSWERED_STDIN} bytes of stdin are queued for request ${p.id}; wait for each exec_write's reply before sending much more`);
    }
    await live.input.write(decodeBase64(p.data));
    return {};
  }

  private async execSignal(params: unknown): Promise<Result> {
    const p = decode(signalParams, params);
    const live = this.inputs.get(p.id);
    if (!live) throw new RpcError(ErrorCode.EXEC_FAILED, `no running exec_pipe or exec_tty has request id ${p.id}`, "not_found");
    live.input.signal(p.signal);
    return {};
  }

  private async exec(params: unknown, id: RequestId | null | undefined, kind: ExecKind, decoded = false): Promise<Result> {
    const sb = this.current();
    const p = decoded ? (params as z.infer<typeof execParams>) : decode(execParams, params);
    const abort = new CancelSwitch();
    const stream = kind.stream;
    // Ids are the client's; if one is reused while its first request runs, cancel finds the first.
    const cancellable = id !== undefined && id !== null && !this.cancels.has(id);
    // "On cancel, stdin reads see EOF": the queued input is dropped, then the command is signalled.
    if (cancellable) this.cancels.set(id, kind.input ? { abort: () => { kind.input!.abort(); abort.abort(); } } : abort);
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    const streamId = id ?? null;
    let overflow = false;
    const sink = stream
      ? {
          // Base64Data: the base64 text goes into the line without JSON.stringify scanning it.
          stdout: (d: Buffer) => this.writer.notify(kind.stdout, { id: streamId, data: new Base64Data(d) }),
          stderr: (d: Buffer) => this.writer.notify(kind.stderr, { id: streamId, data: new Base64Data(d) }),
        }
      : bufferedSink(stdout, stderr, () => {
          overflow = true;
          abort.abort();
        });
    try {
      const out = await sb.exec(p.command, { workingDir: p.working_dir, user: p.user, env: p.env, cancel: abort, input: kind.input }, sink);
      if (overflow) {
        throw new RpcError(ErrorCode.EXEC_FAILED, `exec error: output exceeds ${MAX_BUFFERED_OUTPUT} bytes; the command was stopped (use exec_stream for large output)`);
      }
      if (abort.aborted) throw new RpcError(ErrorCode.CANCELLED, "context canceled");
      // Matchlock extensions: the killing signal, and whether the OOM killer sent it.
      const extra = { ...(out.signal ? { signal: out.signal } : {}), ...(out.outOfMemory ? { out_of_memory: true } : {}) };
      return stream
        ? { exit_code: out.exitCode, duration_ms: out.durationMs, ...extra }
        : {
            exit_code: out.exitCode,
            stdout: Buffer.concat(stdout).toString("base64"),
            stderr: Buffer.concat(stderr).toString("base64"),
            duration_ms: out.durationMs,
            ...extra,
          };
    } finally {
      if (cancellable) this.cancels.delete(id);
    }
  }

  private async writeFile(params: unknown): Promise<Result> {
    const sb = this.current();
    const p = decode(writeParams, params);
    const content = decodeBase64(p.content);
    await sb.writeFile(p.path, content, p.mode || 0o644);
    return {};
  }

  private async readFile(params: unknown): Promise<Result> {
    const sb = this.current();
    const p = decode(pathParams, params);
    return { content: new Base64Data(await sb.readFile(p.path)) };
  }

  private async listFiles(params: unknown): Promise<Result> {
    const sb = this.current();
    const p = decode(pathParams, params);
    return { files: await sb.listFiles(p.path) };
  }

  private async cancel(params: unknown): Promise<Result> {
    const p = decode(cancelParams, params);
    const ctl = this.cancels.get(p.id);
    if (ctl) {
      ctl.abort();
      return { cancelled: true };
    }
    // The create finished before its cancel arrived: the client gave up on it and never saw
    // its id, so the sandbox is undone all the same.
    if (this.sandbox && this.createdBy !== undefined && this.createdBy === p.id) {
      const sb = this.sandbox;
      this.sandbox = undefined;
      this.createdBy = undefined;
      this.lastId = undefined;
      this.log(`create of ${sb.id} was cancelled after it finished: stopping and removing it`);
      await this.undoCreate(sb);
      this.hub?.remove(sb.id);
      return { cancelled: true };
    }
    return { cancelled: false };
  }

  /**
   * Undoes a create whose client gave up on it: the sandbox stops at once and its state goes.
   * If stopping fails, the record stays (so that `list`, `kill` and gc still find what is left)
   * and the error is rethrown.
   */
  private async undoCreate(sb: Sandbox): Promise<void> {
    try {
      await sb.close(0);
    } catch (err) {
      this.log(`stopping ${sb.id} failed, its record stays for gc: ${(err as Error).message}`);
      throw err;
    }
    await removeVmDir(sb.id);
  }
}

/** A buffered exec's output is held in memory until it ends, so it is capped. */
export const MAX_BUFFERED_OUTPUT = 256 * 1024 * 1024;

function bufferedSink(stdout: Buffer[], stderr: Buffer[], onOverflow: () => void) {
  let total = 0;
  const keep = (into: Buffer[]) => (d: Buffer) => {
    if (total > MAX_BUFFERED_OUTPUT) return;
    total += d.length;
    if (total > MAX_BUFFERED_OUTPUT) onOverflow();
    else into.push(d);
  };
  return { stdout: keep(stdout), stderr: keep(stderr) };
}
