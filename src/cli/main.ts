#!/usr/bin/env node
// The `matchlock` command line. Every failure prints one "Error: ..." line on stderr and exits 1.
import { Command } from "commander";
import { readFileSync } from "node:fs";
import { registerDoctorCommand } from "./doctor.js";
import { registerImageCommands } from "./image.js";
import { registerRunCommand } from "./run.js";
import { registerVmCommands } from "./vms.js";
import { serve } from "../engine/rpc/server.js";
import { reclaimDeadLinks } from "../engine/net/link-allocation.js";
import { collectGarbage } from "../engine/sandbox/gc.js";

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
    const log = (l: string) => process.stderr.write(`matchlock: ${l}\n`);
    // A bug of ours must not take the user's sandbox session down with it: log and carry on.
    process.on("unhandledRejection", (err) => log(`internal error: ${(err as Error)?.stack ?? String(err)}`));
    // Network links left by engines that were killed are freed before this one makes its own.
    await reclaimDeadLinks().catch((err: Error) => log(`reclaiming stale sandbox networks failed: ${err.message}`));
    // Reclaim the rest of what engines that died before us left behind; it never blocks serving.
    const gc = collectGarbage()
      .then((rs) => rs.filter((r) => r.cleaned.length).forEach((r) => log(`reclaimed ${r.id}: ${r.cleaned.join(", ")}`)))
      .catch((err: Error) => log(`gc failed: ${err.message}`));
    await serve({ input: process.stdin, output: process.stdout, log });
    // A short session must not cut the reclaim short (a killed sandbox's cgroups can take seconds to go).
    await gc;
    process.exit(0);
  });

program
  .command("version")
  .description("print the version")
  .action(() => console.log(`matchlock ${pkg.version} (commit: ${process.env.MATCHLOCK_COMMIT ?? "unknown"}, built: unknown)`));

registerRunCommand(program);
registerVmCommands(program);
registerImageCommands(program);
registerDoctorCommand(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`Error: ${(err as Error)?.message ?? String(err)}\n`);
  process.exit(1);
});
