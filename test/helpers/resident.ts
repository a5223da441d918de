// A resident engine (`matchlock serve`) for tests, and raw JSON-RPC connections to it.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { connect, type Socket } from "node:net";
import { CLI } from "./e2e.js";

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
export class SocketSession {
  readonly socket: Socket;
  readonly closed: Promise<void>;
  private buffered = "";
  private readonly queue: any[] = [];
  private waiters: Array<() => void> = [];

  constructor(path: string) {
    this.socket = connect(path);
    this.socket.on("error", () => undefined);
    this.closed = new Promise((resolve) => this.socket.once("close", () => resolve()));
    this.socket.on("data", (d: Buffer) => {
      this.buffered += d.toString();
      let nl: number;
      while ((nl = this.buffered.indexOf("\n")) >= 0) {
        this.queue.push(JSON.parse(this.buffered.slice(0, nl)));
        this.buffered = this.buffered.slice(nl + 1);
      }
      this.waiters.splice(0).forEach((w) => w());
    });
  }

  sendLine(line: string): void {
    this.socket.write(line + "\n");
  }

  async next(): Promise<any> {
    while (this.queue.length === 0) await new Promise<void>((r) => this.waiters.push(r));
    return this.queue.shift();
  }

  call(method: string, params: object | undefined, id: number): Promise<any> {
    this.sendLine(JSON.stringify({ jsonrpc: "2.0", method, ...(params ? { params } : {}), id }));
    return this.next();
  }
}
