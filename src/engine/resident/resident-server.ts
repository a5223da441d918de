// The resident engine: one process serving many JSON-RPC sessions, one per unix-socket
// connection. Each connection is exactly one `matchlock rpc` stdio session (the same server
// code, the same wire format, at most one sandbox): the client closing its end is stdin's EOF,
// and tears that session's sandbox down. Sandbox records name this process as their owner, so
// if it is killed, the next engine's gc reclaims all of them as it would a killed `matchlock rpc`.
import { createServer, type Server, type Socket } from "node:net";
import { serve } from "../rpc/server.js";
import type { Session } from "../rpc/session.js";
import type { Sandbox } from "../sandbox/sandbox.js";
import { recordsOwnedByResidentEngine, takeStopRequest } from "../sandbox/state.js";
import { listenOwnerOnly } from "./socket-claim.js";
import { SandboxHub } from "./sandbox-hub.js";
import { WarmPool } from "./warm-pool.js";
import { engineCreateDeps } from "../sandbox/create.js";

/** After the session ended, how long the client may keep its end open before it is cut. */
const LINGER_MS = 5000;

export interface ResidentOptions {
  socketPath: string;
  log: (line: string) => void;
  /**
   * Whether sandboxes made through this server are recorded as the resident engine's (default
   * true). `matchlock run` serves its one sandbox for `exec` and makes none through it.
   */
  ownsRecords?: boolean;
  /**
   * Retire after this long without a connection or a detached sandbox: the socket goes at once
   * (new clients start another server), and `onRetired` runs once the last connection that
   * arrived meanwhile has ended. Default: never.
   */
  idleExitMs?: number;
  onRetired?: () => void;
  /** Keep a warm spare like the sandbox that closed last, for the next create like it (warm-pool.ts). */
  warmPool?: boolean;
}

/** An open connection: its session (once serve made it) and the end of that session. */
interface Connection {
  session?: Session;
  ended: Promise<void>;
}

export class ResidentServer {
  private readonly connections = new Map<Socket, Connection>();
  private readonly hub = new SandboxHub();
  private warmPool: WarmPool | undefined;
  private connectionCount = 0;
  private server!: Server;
  private stopping?: Promise<void>;
  private idleTimer?: NodeJS.Timeout;
  /** Idle for idleExitMs: the socket is gone, the server ends with its last connection. */
  private retiring = false;

  /** Removes our socket file; set once listening. */
  private releaseSocket: () => Promise<void> = async () => undefined;

  private constructor(
    private readonly log: (line: string) => void,
    readonly socketPath: string,
    private readonly idle: Pick<ResidentOptions, "idleExitMs" | "onRetired">,
  ) {}

  static async start(opts: ResidentOptions): Promise<ResidentServer> {
    const self = new ResidentServer(opts.log, opts.socketPath, opts);
    if (opts.ownsRecords ?? true) recordsOwnedByResidentEngine(opts.socketPath);
    if (opts.warmPool) self.warmPool = new WarmPool(engineCreateDeps((line) => opts.log(`[warm pool] ${line}`)));
    // allowHalfOpen: a client's EOF ends its session, but the replies still in flight go out.
    self.server = createServer({ allowHalfOpen: true }, (socket) => self.accept(socket));
    self.releaseSocket = await listenOwnerOnly(self.server, opts.socketPath);
    self.server.on("error", (err) => opts.log(`socket server error: ${err.message}`));
    self.checkIdle();
    return self;
  }

  /**
   * Stops accepting, cuts every connection (each session then tears its sandbox down, as on
   * stdin EOF), waits for those teardowns and removes the socket. Idempotent.
   */
  stop(reason: string): Promise<void> {
    this.stopping ??= (async () => {
      this.log(`stopping: ${reason}; ${this.connections.size} session(s) open`);
      clearTimeout(this.idleTimer);
      // While we still listen: our socket's inode is then still ours, not one a newer server got.
      await this.releaseSocket();
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      const ended = [...this.connections].map(([socket, c]) => (socket.destroy(), c.ended));
      const detached = this.hub.detachedIds().map((id) => this.hub.stop(id));
      await Promise.allSettled([...ended, ...detached, this.warmPool?.close()]);
      await closed;
    })();
    return this.stopping;
  }

  /** A sandbox made outside any session (`matchlock run`'s), served for `attach`; stop() stops it. */
  serveSandbox(sandbox: Sandbox): void {
    this.hub.detach(sandbox);
  }

  /**
   * `matchlock kill ID` on one of our sandboxes (SIGUSR2 + a request file): that session ends as
   * if its client had disconnected (a create in progress is aborted), and every other session
   * goes on.
   */
  async stopRequested(): Promise<void> {
    for (const [socket, { session }] of this.connections) {
      const id = session?.sandboxId;
      if (id && (await takeStopRequest(id))) {
        this.log(`stopping ${id}: matchlock kill`);
        socket.destroy();
      }
    }
    for (const id of this.hub.detachedIds()) {
      if (await takeStopRequest(id)) {
        this.log(`stopping detached ${id}: matchlock kill`);
        await this.hub.stop(id).catch((err: Error) => this.log(`stopping ${id} failed: ${err.message}`));
      }
    }
    await this.warmPool?.stopRequested().catch((err: Error) => this.log(`stopping the warm spare failed: ${err.message}`));
    this.checkIdle();
  }

  /** Arms the idle timer when nothing is served, disarms it otherwise; a retiring server stops once idle. */
  private checkIdle(): void {
    const { idleExitMs, onRetired } = this.idle;
    if (idleExitMs === undefined || this.stopping) return;
    const busy = this.connections.size > 0 || this.hub.detachedIds().length > 0;
    if (busy) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    } else if (this.retiring) {
      void this.stop("idle, and the last client has gone").then(onRetired);
    } else {
      this.idleTimer ??= setTimeout(() => void this.retire(), idleExitMs);
    }
  }

  /** No client for idleExitMs: nobody new can connect from now on; the server ends once idle. */
  private async retire(): Promise<void> {
    this.idleTimer = undefined;
    if (this.connections.size > 0 || this.hub.detachedIds().length > 0) return;
    this.retiring = true;
    this.log(`no client for ${this.idle.idleExitMs! / 1000} s: retiring`);
    await this.releaseSocket();
    // A client that connected just before the socket went is served to its end.
    this.checkIdle();
  }

  /** A running sandbox of any session (or a detached one), for another session's port forwards. */
  private findSandbox(id: string): Sandbox | undefined {
    const kept = this.hub.find(id);
    if (kept) return kept;
    for (const { session } of this.connections.values()) {
      const sb = session?.runningSandbox;
      if (sb?.id === id) return sb;
    }
    return undefined;
  }

  private accept(socket: Socket): void {
    if (this.stopping) {
      socket.destroy();
      return;
    }
    const n = ++this.connectionCount;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const log = (line: string) => this.log(`[session ${n}] ${line}`);
    socket.on("error", () => undefined); // a reset connection ends the session like EOF; serve sees it
    // Made before serve runs: serve hands over its session before it returns.
    const connection: Connection = { ended: Promise.resolve() };
    this.connections.set(socket, connection);
    const onSession = (s: Session) => (connection.session = s);
    const findSandbox = (id: string) => this.findSandbox(id);
    connection.ended = serve({ input: socket, output: socket, log, handleSignals: false, onSession, findSandbox, hub: this.hub, warmPool: this.warmPool })
      .catch((err: NodeJS.ErrnoException) => {
        const vanished = err.code === "ERR_STREAM_PREMATURE_CLOSE" || err.code === "ECONNRESET";
        log(vanished ? "the client disconnected" : `session ended: ${err.message}`);
      })
      .finally(() => {
        this.connections.delete(socket);
        // A kill request that arrived as the session ended must not outlive it.
        for (const id of connection.session?.recordIds ?? []) if (!this.hub.isDetached(id)) void takeStopRequest(id);
        socket.end(); // after serve flushed its replies
        setTimeout(() => socket.destroy(), LINGER_MS).unref();
        this.checkIdle();
      });
  }
}
