// Flag helpers that `run` and `exec` share.
import type { Command } from "commander";
import { EXIT_ENGINE_FAILED } from "./exit-status.js";

export function parseBool(v: string): boolean {
  if (["true", "1", "yes"].includes(v)) return true;
  if (["false", "0", "no"].includes(v)) return false;
  throw new Error(`expected true or false, got ${JSON.stringify(v)}`);
}

/** -i and -t, as Docker's (src/cli/interactive.ts connects them). */
export function interactiveFlags(command: Command): void {
  command
    .option("-i, --interactive", "pass our stdin to the command (its end is the command's EOF)")
    .option("-t, --tty", "run the command on a terminal (its output is one stream; with -i our terminal goes raw)");
}

/** A bad flag ends the command with 125, as Docker's, so it is never mistaken for the command's status; --help stays 0. */
export function exitStatusOnBadFlags(command: Command): void {
  command.exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT_ENGINE_FAILED));
}

/** The command words after the options: a `--` that passed through with them is not one. */
export function commandWords(args: readonly string[]): string[] {
  return args[0] === "--" ? args.slice(1) : [...args];
}
