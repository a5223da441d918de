// Before `run` or `exec` starts a command, whether it can start at all: a command that is not
// found exits 127 and one that cannot be invoked 126 (Docker's statuses), with matchlock's own
// message, so that neither is mistaken for the status of a command that ran.
import { shellQuote } from "../engine/sandbox/shell-quote.js";
import { CliExit, EXIT_CANNOT_INVOKE, EXIT_NOT_FOUND } from "./exit-status.js";

/** Runs a shell command in the guest as the real command will run (same user, directory, env). */
export type GuestProbe = (command: string) => Promise<number>;

/**
 * The guest's shell looks `name` up as it will when the command runs: a path must be an
 * executable file; a bare name must be a builtin or an executable on PATH.
 */
export function probeScript(name: string): string {
  const n = shellQuote(name);
  return `case ${n} in */*) [ -e ${n} ] || exit 127; [ -f ${n} ] && [ -x ${n} ] || exit 126;; *) command -v ${n} >/dev/null 2>&1 || exit 127;; esac`;
}

/** Throws the CliExit for a command that cannot start; an error of the probe itself (a bad user or directory) is 126. */
export async function checkInvocable(argv: readonly string[], probe: GuestProbe): Promise<void> {
  const name = argv[0]!;
  let status: number;
  try {
    status = await probe(probeScript(name));
  } catch (err) {
    throw new CliExit(EXIT_CANNOT_INVOKE, `cannot run ${JSON.stringify(name)}: ${(err as Error).message}`, { cause: err });
  }
  if (status === EXIT_NOT_FOUND) throw new CliExit(EXIT_NOT_FOUND, `${JSON.stringify(name)}: executable file not found${name.includes("/") ? "" : " in $PATH"}`);
  if (status === EXIT_CANNOT_INVOKE) throw new CliExit(EXIT_CANNOT_INVOKE, `${JSON.stringify(name)}: permission denied (not an executable file)`);
  if (status !== 0) throw new CliExit(EXIT_CANNOT_INVOKE, `cannot run ${JSON.stringify(name)}: the check before it exited with ${status}`);
}
