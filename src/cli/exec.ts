// `matchlock exec ID -- CMD`: a command in a running sandbox, as `docker exec`: its output
// streamed, and its exit status as ours (125-127 when it did not run). It reaches the sandboxes
// whose engine serves `attach` on a socket the record names: the resident engine's (`matchlock
// serve`, `run -d`) and a foreground `matchlock run`'s while its command runs.
import type { Command } from "commander";
import { Method, Notification } from "../protocol/methods.js";
import { shellQuote } from "../engine/sandbox/shell-quote.js";
import { OutputSink } from "../sdk/output-sink.js";
import { decodeBase64 } from "../sdk/wire.js";
import type { JsonObject } from "../sdk/transport.js";
import { checkInvocable } from "./command-check.js";
import { envOptions } from "./env-options.js";
import { EXIT_ENGINE_FAILED, failingWith } from "./exit-status.js";
import { collect } from "./options.js";
import { commandWords, exitStatusOnBadFlags, interactiveFlags, refuseInteractive } from "./run-options.js";
import { engineOf, openResident } from "./resident-link.js";

interface ExecFlags {
  user?: string;
  workdir?: string;
  env: string[];
  envFile: string[];
  interactive?: boolean;
  tty?: boolean;
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
      refuseInteractive(flags);
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
        const out = { [Notification.EXEC_STDOUT]: new OutputSink(process.stdout), [Notification.EXEC_STDERR]: new OutputSink(process.stderr) } as Record<string, OutputSink>;
        try {
          const result = await transport.request(Method.EXEC_STREAM, { ...params, command: command.map(shellQuote).join(" ") }, {
            signal: stopped.signal,
            onNotification: (method, p) => out[method]?.write(decodeBase64(p.data)),
          });
          process.exitCode = Number(result.exit_code);
        } finally {
          await Promise.all(Object.values(out).map((s) => s.end()));
        }
      } catch (err) {
        if (stopped.signal.aborted) return; // interrupted: the command was cancelled in the guest
        throw err;
      } finally {
        await transport.shutdown(2000);
      }
    }));
}
