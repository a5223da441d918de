// The `matchlock` command line. Every failure prints one "Error: ..." line on stderr and exits 1
// (`run` and `exec`: 125-127, see exit-status.ts).
import { Command } from "commander";
import { packageVersion } from "../protocol/handshake.js";
import { registerDoctorCommand } from "./doctor.js";
import { registerImageCommands } from "./image.js";
import { registerRunCommand } from "./run.js";
import { registerExecCommand } from "./exec.js";
import { registerLogCommand } from "./log.js";
import { CliExit } from "./exit-status.js";
import { registerVmCommands } from "./vms.js";
import { runRpc } from "./rpc.js";
import { registerServeCommand } from "./serve.js";
import { settings } from "../settings/settings.js";
import { registerSetupCommand } from "./setup.js";
import { registerAllowListCommand } from "./allow-list.js";
import { registerPortForwardCommand } from "./port-forward.js";
import { registerVolumeCommands } from "./volume.js";


const program = new Command("matchlock")
  .description("Sandboxes for AI agents' code: isolated Linux environments booted from OCI images")
  .version(`matchlock version ${packageVersion()}`, "--version", "print the version")
  .showHelpAfterError()
  .configureOutput({ outputError: (str, write) => write(str) });

program
  .command("rpc")
  .description("serve the JSON-RPC protocol on stdin/stdout (what the SDKs run)")
  .action(runRpc);

program
  .command("version")
  .description("print the version")
  .action(() => console.log(`matchlock ${packageVersion()} (commit: ${settings.commit.read()}, built: unknown)`));

registerServeCommand(program);
registerRunCommand(program);
registerExecCommand(program);
registerLogCommand(program);
registerVmCommands(program);
registerPortForwardCommand(program);
registerAllowListCommand(program);
registerImageCommands(program);
registerVolumeCommands(program);
registerDoctorCommand(program);
registerSetupCommand(program);

export function runCli(argv: string[]): void {
  program.parseAsync(argv).catch((err: unknown) => {
    process.stderr.write(`Error: ${(err as Error)?.message ?? String(err)}\n`);
    process.exit(err instanceof CliExit ? err.status : 1);
  });
}
