#!/usr/bin/env node
// The `matchlock` command line. Every failure prints one "Error: ..." line on stderr and exits 1.
import { Command } from "commander";
import { readFileSync } from "node:fs";
import { registerImageCommands } from "./image.js";
import { registerRunCommand } from "./run.js";
import { registerVmCommands } from "./vms.js";
import { serve } from "../engine/rpc/server.js";
import { reclaimDeadLinks } from "../engine/net/link-allocation.js";

const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };

const program = new Command("matchlock")
  .description("Sandboxes for AI agents' code: isolated Linux environments booted from OCI images")
  .version(`matchlock version ${pkg.version}`, "--version", "print the version")
  .showHelpAfterError()
  .configureOutput({ outputError: (str, write) => write(str) });

program
  .command("rpc")
  .description("serve the JSON-RPC protocol on stdin/stdout (what the SDKs run)")
  .action(async () => {
    // Network links left by engines that were killed are freed before this one makes its own.
    await reclaimDeadLinks().catch((err: Error) => process.stderr.write(`matchlock: reclaiming stale sandbox networks failed: ${err.message}\n`));
    await serve({ input: process.stdin, output: process.stdout, log: (l) => process.stderr.write(`matchlock: ${l}\n`) });
    process.exit(0);
  });

program
  .command("version")
  .description("print the version")
  .action(() => console.log(`matchlock ${pkg.version} (commit: ${process.env.MATCHLOCK_COMMIT ?? "unknown"}, built: unknown)`));

registerRunCommand(program);
registerVmCommands(program);
registerImageCommands(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`Error: ${(err as Error)?.message ?? String(err)}\n`);
  process.exit(1);
});
