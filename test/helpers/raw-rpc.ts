// A raw `matchlock rpc` session for e2e tests that speak the wire protocol as any SDK would.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { CLI } from "./e2e.js";

/** A raw `matchlock rpc` session: send lines, read parsed messages. */
export class RawSession {
  readonly proc: ChildProcessWithoutNullStreams;
  private buffered = "";
  private readonly queue: unknown[] = [];
  private waiters: Array<() => void> = [];
  readonly exited: Promise<number | null>;

  constructor() {
    this.proc = spawn(process.execPath, [CLI, "rpc"], { stdio: ["pipe", "pipe", "pipe"] });
    this.proc.stderr.resume();
    this.exited = new Promise((resolve) => this.proc.on("exit", (code) => resolve(code)));
    this.proc.stdout.on("data", (d: Buffer) => {
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
    this.proc.stdin.write(line);
    this.proc.stdin.write("\n");
  }

  send(msg: object): void {
    this.sendLine(JSON.stringify(msg));
  }

  async next(): Promise<any> {
    while (this.queue.length === 0) await new Promise<void>((r) => this.waiters.push(r));
    return this.queue.shift();
  }

  async call(method: string, params: object | undefined, id: number): Promise<any> {
    this.send({ jsonrpc: "2.0", method, ...(params ? { params } : {}), id });
    return this.next();
  }
}

