// Runs the network tools (ip, nft) with clear errors, on top of the generic runCommand().
import { runCommand } from "../host-commands.js";

export class HostCommandError extends Error {}

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
