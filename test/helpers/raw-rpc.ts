// Raw wire-protocol sessions for tests that speak JSON-RPC as any SDK would: over a spawned
// `matchlock rpc`'s stdio (RawSession) or a resident engine's socket (resident.ts).
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { CLI } from "./e2e.js";

/** Send lines to `input`, read the parsed messages of `output` in order. */
export class JsonLineSession {
  private buffered = "";
  private readonly queue: any[] = [];
  private waiters: Array<() => void> = [];

  constructor(private readonly input: Writable, output: Readable) {
    output.on("data", (d: Buffer) => {
      this.buffered += d.toString();
      let nl: number;
      while ((nl = this.buffered.indexOf("\n")) >= 0) {
        this.queue.push(JSON.parse(this.buffered.slice(0, nl)));
        this.buffered = this.buffered.slice(nl + 1);
      }
      this.waiters.splice(0).forEach((w) => w());
    });
  }

  sendLine(line: string | Buffer): void {
    this.input.write(line);
    this.input.write("\n");
  }

  send(msg: object): void {
    this.sendLine(JSON.stringify(msg));
  }

  async next(): Promise<any> {
    while (this.queue.length === 0) await new Promise<void>((r) => this.waiters.push(r));
    return this.queue.shift();
  }

  call(method: string, params: object | undefined, id: number): Promise<any> {
    this.send({ jsonrpc: "2.0", method, ...(params ? { params } : {}), id });
    return this.next();
  }
}

/** A raw `matchlock rpc` session. */
export class RawSession extends JsonLineSession {
  readonly proc: ChildProcessWithoutNullStreams;
  readonly exited: Promise<number | null>;

  /** `env`: added to this process's environment for the engine. */
  constructor(env: Record<string, string> = {}) {
    const proc = spawn(process.execPath, [CLI, "rpc"], { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, ...env } });
    super(proc.stdin, proc.stdout);
    this.proc = proc;
    this.proc.stderr.resume();
    this.exited = new Promise((resolve) => this.proc.on("exit", (code) => resolve(code)));
  }
}
