// Runs a short CLI command (e.g. `matchlock rm <id>`) and collects its output.
import { spawn } from "node:child_process";
import { OutputTail } from "./output-tail.js";

export interface CommandResult {
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function runCommand(argv: readonly string[]): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const [command, ...args] = argv;
    const child = spawn(command!, args, { stdio: ["ignore", "pipe", "pipe"] });
    const stdout = new OutputTail(16384);
    const stderr = new OutputTail(16384);
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
    child.once("error", reject);
    // 'close' (not 'exit') so that all output has been read.
    child.once("close", (code, signal) => resolve({ code, signal, stdout: stdout.text(), stderr: stderr.text() }));
  });
}
