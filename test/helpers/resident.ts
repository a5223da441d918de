// A resident engine (`matchlock serve`) for tests, and raw JSON-RPC connections to it.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { after, before } from "node:test";
import { Client } from "../../src/sdk/index.js";
import { CLI, setUpE2E } from "./e2e.js";
import { JsonLineSession } from "./raw-rpc.js";

export interface Server {
  proc: ChildProcessWithoutNullStreams;
  socketPath: string;
  stderr(): string;
  exited: Promise<number | null>;
  /** SIGTERM (or `signal`) and wait for the exit; returns the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `matchlock serve --socket <path>`; resolves once it serves, rejects with its stderr if it exits first. */
export function startServer(socketPath: string, env: Record<string, string> = {}, opts: { detached?: boolean } = {}): Promise<Server> {
  const proc = spawn(process.execPath, [CLI, "serve", "--socket", socketPath], {
    env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"], detached: opts.detached ?? false,
  });
  let stderr = "";
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code, signal) => resolve(code ?? (signal ? 128 : null))));
  const server: Server = {
    proc, socketPath, exited,
    stderr: () => stderr,
    stop: async (signal = "SIGTERM") => {
      proc.kill(signal);
      return exited;
    },
  };
  return new Promise((resolve, reject) => {
    proc.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
      if (stderr.includes("serving on ")) resolve(server);
    });
    void exited.then((code) => reject(new Error(`matchlock serve exited (${code}) before serving: ${stderr}`)));
  });
}

/** A suite's resident engine: its e2e home, the server, and SDK clients connected to it. */
export interface ResidentSuite {
  readonly home: string;
  readonly server: Server;
  client(): Client;
}

/**
 * For a suite about one resident engine: registers node:test hooks that set up the e2e home and
 * start `matchlock serve` on $MATCHLOCK_HOME/run/engine.sock before the suite, and stop it after.
 */
export function residentSuite(): ResidentSuite {
  let home: string | undefined;
  let server: Server | undefined;
  before(async () => {
    home = await setUpE2E();
    server = await startServer(join(home, "run", "engine.sock"));
  });
  after(async () => {
    await server?.stop();
  });
  return {
    get home() { return home!; },
    get server() { return server!; },
    client: () => new Client({ engineSocket: server!.socketPath, binaryPath: CLI }),
  };
}

/** One raw connection to a resident engine: send requests, read parsed replies in order. */
export class SocketSession extends JsonLineSession {
  readonly socket: Socket;
  readonly closed: Promise<void>;

  constructor(path: string) {
    const socket = connect(path);
    super(socket, socket);
    this.socket = socket;
    this.socket.on("error", () => undefined);
    this.closed = new Promise((resolve) => this.socket.once("close", () => resolve()));
  }
}
