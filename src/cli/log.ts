// `matchlock log [-f] ID`: a sandbox's log from its state directory, for a running sandbox of any
// engine and for a stopped one whose record was kept. -f follows it until the sandbox stops.
import type { Command } from "commander";
import { once } from "node:events";
import { logFile, ownerAlive, readVm } from "../engine/sandbox/state.js";
import { followVmLog, readVmLog } from "../engine/sandbox/vm-log.js";

/** Whether the sandbox is over: its record says so, or the engine that ran it is gone. */
async function sandboxDone(id: string): Promise<boolean> {
  const vm = await readVm(id);
  return !vm || vm.status !== "running" || !(await ownerAlive(vm));
}

export function registerLogCommand(program: Command): void {
  program
    .command("log")
    .alias("logs")
    .description("print a sandbox's log: its engine's messages and the output of its entrypoint or `run` command")
    .argument("<id>", "sandbox id (vm-xxxxxxxx)")
    .option("-f, --follow", "keep printing what is appended until the sandbox stops")
    .action(async (id: string, opts: { follow?: boolean }) => {
      if (!(await readVm(id))) throw new Error(`VM ${id} not found`);
      // A reader that went away (`| head`) ends the follow quietly.
      process.stdout.on("error", () => process.exit(0));
      const print = (data: Buffer) => (process.stdout.write(data) ? undefined : once(process.stdout, "drain"));
      if (!opts.follow) {
        await print(await readVmLog(logFile(id)));
        return;
      }
      await followVmLog(logFile(id), { onData: print, stopped: () => sandboxDone(id) });
    });
}
