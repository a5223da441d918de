// Drives a matchlock-agent binary directly over its stdio with the protocol codec, for tests.
// Deliberately independent of the engine's AgentConnection: tests see every raw frame.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import {
  DATA_CHUNK, FrameDecoder, FrameType, decodeEntries, decodeExit, decodeStat, encodeFrame, encodeStrings,
  type DirEntry, type FileStat, type ExitStatus, type Frame, type FrameTypeCode,
} from "../../src/protocol/agent-frames.js";

/** Built by `make -C guest/agent`; this file compiles to dist/test/helpers/. */
export const AGENT_BINARY = fileURLToPath(new URL("../../../guest/agent/build/matchlock-agent", import.meta.url));

export interface OpResult {
  id: number;
  /** Every frame of the operation, the final EXIT/OK/ERROR included. */
  frames: Frame[];
  stdout: Buffer;
  stderr: Buffer;
  exit?: ExitStatus;
  error?: string;
  ok: boolean;
  entries: DirEntry[];
  /** STAT's answer. */
  stat?: FileStat;
}

export interface ExecOptions {
  cwd?: string;
  user?: string;
  env?: string[];
}

export interface AgentOptions {
  umask?: number;
  /** Supplementary groups the agent starts with (needs root and setpriv). */
  groups?: number[];
  /**
   * Run the agent in device mode (`--channel`, as in the micro-VM) on a raw pseudo-terminal,
   * with a python3 relay between the pty master and this driver's pipes.
   */
  channelDevice?: boolean;
}

/** Relays stdin -> pty master -> stdout for an agent opened on the pty slave; exits with the agent's code. */
const PTY_RELAY = `
import os, pty, select, subprocess, sys, tty
master, slave = pty.openpty()
tty.setraw(slave)
agent = subprocess.Popen([sys.argv[1], "--channel", os.ttyname(slave)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
# The slave stays open here: if its last descriptor closed before the agent opened it, the
# master would read as hung up. The loop ends on stdin EOF (we hang up) or the agent's exit.
fds = [0, master]
while agent.poll() is None:
    for fd in select.select(fds, [], [], 0.1)[0]:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            fds.remove(fd)
            if fd == 0:
                os.close(master)  # hang up: the agent's read fails with EIO, which it takes as EOF
                fds = []
            continue
        out = master if fd == 0 else 1
        while data:
            data = data[os.write(out, data):]
sys.exit(agent.wait())
`;

interface Pending {
  frames: Frame[];
  onFrame?: ((frame: Frame) => void) | undefined;
  resolve(result: OpResult): void;
  reject(err: Error): void;
}

const TERMINAL = new Set<number>([FrameType.EXIT, FrameType.OK, FrameType.ERROR, FrameType.STAT_RESULT, FrameType.PORT_CLOSED]);
const DEFAULT_ENV = ["PATH=/usr/local/bin:/usr/bin:/bin"];

export class AgentDriver {
  /** Agents not yet exited, so that a test run can kill leftovers (e.g. after a timeout). */
  private static readonly live = new Set<AgentDriver>();

  static killAll(): void {
    for (const agent of AgentDriver.live) agent.proc.kill("SIGKILL");
  }

  readonly proc: ChildProcessWithoutNullStreams;
  readonly ready: Promise<string>;
  /** Frames for ids with no pending operation, e.g. anything after an op's final frame. */
  readonly stray: Frame[] = [];
  /** The id of every frame received, in arrival order. */
  readonly arrivals: number[] = [];
  stderrText = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly decoder = new FrameDecoder();
  private readonly pending = new Map<number, Pending>();
  private resolveReady!: (version: string) => void;
  private rejectReady!: (err: Error) => void;
  private nextId = 1;
  private failure: Error | undefined;

  /**
   * Starts the agent. `umask` and supplementary `groups` are applied through a small /bin/sh
   * (and setpriv) wrapper that execs the agent, so the agent keeps the wrapper's pid.
   */
  constructor(opts: AgentOptions = {}) {
    if (opts.channelDevice) {
      this.proc = spawn("python3", ["-c", PTY_RELAY, AGENT_BINARY], { stdio: "pipe" });
    } else if (opts.umask === undefined && opts.groups === undefined) {
      this.proc = spawn(AGENT_BINARY, [], { stdio: "pipe" });
    } else {
      const umask = opts.umask === undefined ? "" : `umask ${opts.umask.toString(8).padStart(4, "0")} && `;
      const groups = opts.groups === undefined ? "" : `setpriv --groups ${opts.groups.join(",")} -- `;
      this.proc = spawn("/bin/sh", ["-c", `${umask}exec ${groups}"$0"`, AGENT_BINARY], { stdio: "pipe" });
    }
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {});
    AgentDriver.live.add(this);
    this.exited = new Promise((resolve) => {
      this.proc.on("exit", (code, signal) => {
        AgentDriver.live.delete(this);
        this.fail(new Error(`agent exited (code ${code}, signal ${signal}); stderr: ${this.stderrText}`));
        resolve({ code, signal });
      });
    });
    this.proc.stdout.on("data", (chunk: Buffer) => this.onData(chunk));
    this.proc.stderr.on("data", (chunk: Buffer) => { this.stderrText += chunk.toString("utf8"); });
    // Writes after the agent died fail with EPIPE; the pending ops report the real cause.
    this.proc.stdin.on("error", () => {});
  }

  static async start(opts: AgentOptions = {}): Promise<AgentDriver> {
    const driver = new AgentDriver(opts);
    await driver.ready;
    return driver;
  }

  allocId(): number {
    return this.nextId++;
  }

  /** Writes raw bytes to the agent's stdin, waiting for the pipe to drain. */
  async writeRaw(data: Buffer): Promise<void> {
    if (!this.proc.stdin.write(data)) await once(this.proc.stdin, "drain");
  }

  send(type: FrameTypeCode, id: number, payload: Buffer = Buffer.alloc(0)): Promise<void> {
    return this.writeRaw(encodeFrame(type, id, payload));
  }

  /** Registers an operation that ends with EXIT, OK or ERROR. Call before sending its frames. */
  track(id: number, onFrame?: (frame: Frame) => void): Promise<OpResult> {
    return new Promise<OpResult>((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      this.pending.set(id, { frames: [], onFrame, resolve, reject });
    });
  }

  async op(type: FrameTypeCode, payload: Buffer, onFrame?: (frame: Frame) => void): Promise<OpResult> {
    const id = this.allocId();
    const result = this.track(id, onFrame);
    await this.send(type, id, payload);
    return result;
  }

  /** Starts an exec and returns its id right away, so that it can be signalled. */
  async startExec(command: string, opts: ExecOptions = {}, onFrame?: (frame: Frame) => void): Promise<{ id: number; done: Promise<OpResult> }> {
    const id = this.allocId();
    const done = this.track(id, onFrame);
    done.catch(() => {});
    await this.send(FrameType.EXEC, id, encodeStrings([opts.cwd ?? "", opts.user ?? "", command, ...(opts.env ?? DEFAULT_ENV)]));
    return { id, done };
  }

  async exec(command: string, opts: ExecOptions = {}): Promise<OpResult> {
    return (await this.startExec(command, opts)).done;
  }

  async writeFile(path: string, mode: number, data: Buffer): Promise<OpResult> {
    const id = this.allocId();
    const done = this.track(id);
    done.catch(() => {});
    await this.send(FrameType.WRITE_OPEN, id, encodeStrings([path, String(mode)]));
    for (let off = 0; off < data.length; off += DATA_CHUNK) {
      await this.send(FrameType.WRITE_DATA, id, data.subarray(off, off + DATA_CHUNK));
    }
    await this.send(FrameType.WRITE_DATA, id, Buffer.alloc(0));
    return done;
  }

  readFile(path: string): Promise<OpResult> {
    return this.op(FrameType.READ, encodeStrings([path]));
  }

  list(path: string): Promise<OpResult> {
    return this.op(FrameType.LIST, encodeStrings([path]));
  }

  ping(): Promise<OpResult> {
    return this.op(FrameType.PING, Buffer.alloc(0));
  }

  signal(id: number, signo: number): Promise<void> {
    return this.send(FrameType.SIGNAL, id, Buffer.from([signo]));
  }

  /** EOF on the agent's stdin: it must kill its execs and exit 0. */
  closeInput(): void {
    this.proc.stdin.end();
  }

  /**
   * Closes stdin and waits for the agent to exit (SIGKILL after `timeoutMs`, which callers see as
   * a signal instead of exit 0: generous, as the agent's own reaping may wait 2 s and a loaded
   * machine stretches that).
   */
  async stop(timeoutMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.closeInput();
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.rejectReady(err);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  private onData(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.fail(err as Error);
      this.proc.kill("SIGKILL");
      return;
    }
    for (const frame of frames) {
      this.arrivals.push(frame.id);
      if (frame.type === FrameType.READY && frame.id === 0) {
        this.resolveReady(frame.payload.toString("utf8"));
        continue;
      }
      const op = this.pending.get(frame.id);
      if (!op) {
        this.stray.push(frame);
        continue;
      }
      op.frames.push(frame);
      op.onFrame?.(frame);
      if (TERMINAL.has(frame.type)) {
        this.pending.delete(frame.id);
        try {
          op.resolve(summarize(frame.id, op.frames));
        } catch (err) {
          op.reject(err as Error);
        }
      }
    }
  }
}

function summarize(id: number, frames: Frame[]): OpResult {
  const last = frames[frames.length - 1]!;
  const pick = (type: number) => Buffer.concat(frames.filter((f) => f.type === type).map((f) => f.payload));
  const result: OpResult = {
    id,
    frames,
    stdout: pick(FrameType.STDOUT),
    stderr: pick(FrameType.STDERR),
    ok: last.type === FrameType.OK,
    entries: frames.filter((f) => f.type === FrameType.ENTRIES).flatMap((f) => decodeEntries(f.payload)),
  };
  if (last.type === FrameType.EXIT) result.exit = decodeExit(last.payload);
  if (last.type === FrameType.ERROR) result.error = last.payload.toString("utf8");
  if (last.type === FrameType.STAT_RESULT) result.stat = decodeStat(last.payload);
  return result;
}
