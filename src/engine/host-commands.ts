// Runs a short host program and tells the caller everything that happened (status, output, a
// timeout, output over a cap, a program that is not there), so that it can say what went wrong
// in its own terms: conntrack lookups, Docker credential helpers; and `run` for the network tools
// (ip, nft), which either work or throw. The one place the engine spawns a short host command.
import { spawn } from "node:child_process";
import { EngineError, type ErrorKind } from "../protocol/errors.js";

export interface CommandLimits {
  /** Written to the command's stdin, which is closed after it (at once without it). */
  input?: string;
  /** The command is killed after this long (no limit without it). */
  timeoutMs?: number;
  /**
   * At most this many bytes of stdout are read: one more and the command is killed (its output is
   * not to be believed). stderr is kept up to this many bytes, the rest dropped. No limit without it.
   */
  maxOutputBytes?: number;
}

export interface CommandResult {
  /** The exit status; null when the command was killed or never ran. */
  status: number | null;
  stdout: string;
  stderr: string;
  /** Why it did not run (ENOENT: not installed); the other fields are then empty. */
  spawnError?: NodeJS.ErrnoException;
  /** Killed at timeoutMs. */
  timedOut: boolean;
  /** Killed for printing more than maxOutputBytes to stdout (stdout holds what came before). */
  outputTooLong: boolean;
}

/** Runs `cmd` to its end (or its limits) and tells what happened; never rejects. */
export function runCommand(cmd: string, args: string[], limits: CommandLimits = {}): Promise<CommandResult> {
  const maxBytes = limits.maxOutputBytes ?? Infinity;
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let outBytes = 0;
    const err: Buffer[] = [];
    let errBytes = 0;
    let timedOut = false;
    let outputTooLong = false;
    let spawnError: NodeJS.ErrnoException | undefined;
    const stop = () => {
      p.kill("SIGKILL");
      // Not waiting for the pipes either: a grandchild (a wrapper's child) may hold them open, and
      // 'close' would never come.
      p.stdout.destroy();
      p.stderr.destroy();
    };
    const timer = limits.timeoutMs === undefined ? undefined : setTimeout(() => {
      timedOut = true;
      stop();
    }, limits.timeoutMs);
    p.stdout.on("data", (d: Buffer) => {
      outBytes += d.length;
      if (outBytes > maxBytes) {
        outputTooLong = true;
        return stop();
      }
      out.push(d);
    });
    p.stderr.on("data", (d: Buffer) => {
      if (errBytes >= maxBytes) return;
      const kept = d.subarray(0, maxBytes - errBytes);
      errBytes += kept.length;
      err.push(kept);
    });
    const finish = (status: number | null) => {
      clearTimeout(timer);
      const text = (chunks: Buffer[]) => Buffer.concat(chunks).toString("utf8");
      resolve({ status, stdout: text(out), stderr: text(err), timedOut, outputTooLong, ...(spawnError ? { spawnError } : {}) });
    };
    p.once("error", (e) => {
      spawnError = e;
      finish(null);
    });
    p.once("close", finish);
    p.stdin.on("error", () => {}); // a command that exits before reading its input: its status says what happened
    p.stdin.end(limits.input ?? "");
  });
}

export class HostCommandError extends EngineError {
  readonly kind: ErrorKind = "failed";
}

/** Runs a network tool (ip, nft) and returns its stdout; a HostCommandError when it fails. */
export async function run(cmd: string, args: string[], input?: string): Promise<string> {
  const r = await runCommand(cmd, args, input === undefined ? {} : { input });
  if (r.spawnError) throw new HostCommandError(`${cmd} could not run: ${r.spawnError.message} (install iproute2 and nftables)`);
  if (r.status !== 0) throw new HostCommandError(`${cmd} ${args.join(" ")} failed (status ${r.status}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** Like run, but a failure is ignored: for teardown of things that may already be gone. */
export async function runQuietly(cmd: string, args: string[]): Promise<void> {
  await run(cmd, args).catch(() => {});
}
