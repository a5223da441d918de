// Runs the host's network tools (ip, nft) with clear errors.
import { spawn } from "node:child_process";

export class HostCommandError extends Error {}

export function run(cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    p.once("error", (e) => reject(new HostCommandError(`${cmd} could not run: ${e.message} (install iproute2 and nftables)`)));
    p.once("close", (code) => {
      if (code === 0) resolve(out);
      else reject(new HostCommandError(`${cmd} ${args.join(" ")} failed (status ${code}): ${err.trim()}`));
    });
    p.stdin.on("error", () => {}); // a command that exits before reading its input: its status says what happened
    p.stdin.end(input ?? "");
  });
}

/** Like run, but a failure is ignored: for teardown of things that may already be gone. */
export async function runQuietly(cmd: string, args: string[]): Promise<void> {
  await run(cmd, args).catch(() => {});
}
