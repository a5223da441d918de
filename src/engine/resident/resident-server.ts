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

/** After the session ended, how long the client may keep its end open before it is cut. */
const LINGER_MS = 5000;

export interface ResidentOptions {
  socketPath: string;
  log: (line: string) => void;
}

/** An open connection: its session (once serve made it) and the end of that session. */
interface Connection {
  session?: Session;
  ended: Promise<void>;
}

export class ResidentServer {
  private readonly connections = new Map<Socket, Connection>();
  private connectionCount = 0;
  private server!: Server;
  private stopping?: Promise<void>;

  /** Removes our socket file; set once listening. */
  private releaseSocket: () => Promise<void> = async () => undefined;

  private constructor(
    private readonly log: (line: string) => void,
    readonly socketPath: string,
  ) {}

  static async start(opts: ResidentOptions): Promise<ResidentServer> {
    const self = new ResidentServer(opts.log, opts.socketPath);
    recordsOwnedByResidentEngine();
    // allowHalfOpen: a client's EOF ends its session, but the replies still in flight go out.
    self.server = createServer({ allowHalfOpen: true }, (socket) => self.accept(socket));
    self.releaseSocket = await listenOwnerOnly(self.server, opts.socketPath);
    self.server.on("error", (err) => opts.log(`socket server error: ${err.message}`));
    return self;
  }

  /**
   * Stops accepting, cuts every connection (each session then tears its sandbox down, as on
   * stdin EOF), waits for those teardowns and removes the socket. Idempotent.
   */
  stop(reason: string): Promise<void> {
    this.stopping ??= (async () => {
      this.log(`stopping: ${reason}; ${this.connections.size} session(s) open`);
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      const ended = [...this.connections].map(([socket, c]) => (socket.destroy(), c.ended));
      await Promise.allSettled(ended);
      await closed;
      await this.releaseSocket();
    })();
    return this.stopping;
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
  }

  /** A running sandbox of any session, for another session's port forwards. */
  private findSandbox(id: string): Sandbox | undefined {
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
    const log = (line: string) => this.log(`[session ${n}] ${line}`);
    socket.on("error", () => undefined); // a reset connection ends the session like EOF; serve sees it
    // Made before serve runs: serve hands over its session before it returns.
    const connection: Connection = { ended: Promise.resolve() };
    this.connections.set(socket, connection);
    const onSession = (s: Session) => (connection.session = s);
    const findSandbox = (id: string) => this.findSandbox(id);
    connection.ended = serve({ input: socket, output: socket, log, handleSignals: false, onSession, findSandbox })
      .catch((err: NodeJS.ErrnoException) => {
        const vanished = err.code === "ERR_STREAM_PREMATURE_CLOSE" || err.code === "ECONNRESET";
        log(vanished ? "the client disconnected" : `session ended: ${err.message}`);
      })
      .finally(() => {
        this.connections.delete(socket);
        // A kill request that arrived as the session ended must not outlive it.
        for (const id of connection.session?.recordIds ?? []) void takeStopRequest(id);
        socket.end(); // after serve flushed its replies
        setTimeout(() => socket.destroy(), LINGER_MS).unref();
      });
  }
}
