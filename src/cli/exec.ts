// `matchlock exec ID -- CMD`: a command in a running sandbox, as `docker exec`: its output
// streamed, and its exit status as ours (125-127 when it did not run). It reaches the sandboxes
// whose engine serves `attach` on a socket the record names: the resident engine's (`matchlock
// serve`, `run -d`) and a foreground `matchlock run`'s while its command runs.
import type { Command } from "commander";
import { Method, Notification } from "../protocol/methods.js";
import { shellQuote } from "../engine/sandbox/shell-quote.js";
import { OutputSink } from "../sdk/output-sink.js";
import { decodeBase64 } from "../sdk/wire.js";
import { ExecInputChannel } from "../sdk/exec-input.js";
import type { JsonObject, Transport } from "../sdk/transport.js";
import { checkInvocable } from "./command-check.js";
import { envOptions } from "./env-options.js";
import { EXIT_ENGINE_FAILED, failingWith } from "./exit-status.js";
import { collect } from "./options.js";
import { connectInput, startingSize } from "./interactive.js";
import { commandWords, exitStatusOnBadFlags, interactiveFlags } from "./run-options.js";
import { engineOf, openResident } from "./resident-link.js";

interface ExecFlags {
  user?: string;
  workdir?: string;
  env: string[];
  envFile: string[];
  interactive?: boolean;
  tty?: boolean;
}

/**
 * Runs the command with our stdout and stderr as its own, and returns its exit status. With -i
 * (exec_pipe) our stdin is its stdin; with -t (exec_tty) it runs on a terminal the size of ours.
 */
async function runAttached(transport: Transport, params: JsonObject, flags: ExecFlags, signal: AbortSignal): Promise<number> {
  const tty = flags.tty === true;
  const method = tty ? Method.EXEC_TTY : flags.interactive ? Method.EXEC_PIPE : Method.EXEC_STREAM;
  const ready = tty ? Notification.TTY_READY : Notification.PIPE_READY;
  if (tty) Object.assign(params, startingSize());
  const out = new OutputSink(process.stdout);
  const err = new OutputSink(process.stderr);
  const sinks: Record<string, OutputSink> = {
    [Notification.EXEC_STDOUT]: out, [Notification.EXEC_STDERR]: err,
    [Notification.PIPE_STDOUT]: out, [Notification.PIPE_STDERR]: err, [Notification.TTY_STDOUT]: out,
  };
  let input: ExecInputChannel | undefined;
  let disconnect = (): void => undefined;
  try {
    const result = await transport.request(method, params, {
      signal,
      onNotification: (name, p) => {
        if (name === ready && !input && typeof p.id === "number") {
          input = new ExecInputChannel(transport, tty, p.id);
          const channel = input;
          disconnect = connectInput(flags, { write: (d) => channel.write(d), end: () => channel.end(), resize: (s) => channel.resize(s.rows, s.cols) });
          return undefined;
        }
        return sinks[name]?.write(decodeBase64(p.data));
      },
    });
    return Number(result.exit_code);
  } finally {
    disconnect();
    input?.stop();
    await Promise.all([out.end(), err.end()]);
  }
}

export function registerExecCommand(program: Command): void {
  const exec = program
    .command("exec")
    .description("run a command in a running sandbox (of matchlock run, run -d or serve); exits with its status")
    .usage("[options] ID [--] COMMAND [ARG...]")
    .argument("<id>", "sandbox id (vm-xxxxxxxx)")
    .argument("<command...>", "command and arguments (use -- before a command with options)")
    .option("-u, --user <user>", "run as this user: name, uid or uid:gid (default: the sandbox's)")
    .option("-w, --workdir <dir>", "working directory (default: the sandbox's)")
    .option("-e, --env <key[=value]>", "set a variable for this command; KEY alone takes the host's value (repeatable)", collect, [])
    .option("--env-file <file>", "read variables from a file, KEY=VALUE or KEY per line (repeatable)", collect, []);
  interactiveFlags(exec);
  exitStatusOnBadFlags(exec);
  exec
    .passThroughOptions()
    .action((id: string, args: string[], flags: ExecFlags) => failingWith(EXIT_ENGINE_FAILED, async () => {
      const command = commandWords(args);
      if (command.length === 0) throw new Error("command required: matchlock exec ID -- COMMAND [ARG...]");
      const env = envOptions(flags.env, flags.envFile);
      const transport = await openResident(await engineOf(id, "exec"));
      const stopped = new AbortController();
      const onSignal = (code: number) => () => {
        process.exitCode = code;
        stopped.abort();
      };
      process.once("SIGINT", onSignal(130));
      process.once("SIGTERM", onSignal(143));
      try {
        await transport.request(Method.ATTACH, { id });
        const params: JsonObject = {};
        if (flags.workdir) params.working_dir = flags.workdir;
        if (flags.user) params.user = flags.user;
        if (env) params.env = env;
        await checkInvocable(command, async (script) => Number((await transport.request(Method.EXEC, { ...params, command: script }, { signal: stopped.signal })).exit_code));
        process.exitCode = await runAttached(transport, { ...params, command: command.map(shellQuote).join(" ") }, flags, stopped.signal);
      } catch (err) {
        if (stopped.signal.aborted) return; // interrupted: the command was cancelled in the guest
        throw err;
      } finally {
        await transport.shutdown(2000);
      }
    }));
}
