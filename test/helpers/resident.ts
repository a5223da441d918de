// A resident engine (`matchlock serve`) for tests, and raw JSON-RPC connections to it.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { connect, type Socket } from "node:net";
import { CLI } from "./e2e.js";
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
