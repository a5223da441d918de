#!/usr/bin/env -S node --
// The `matchlock` binary. A bare `matchlock rpc` (what the SDKs run for every sandbox) goes
// straight to the engine, loaded from the single bundle `npm run build` makes of it
// (scripts/bundle-engine.sh), without the command-line parser and every other command's
// modules. Everything else, `matchlock rpc --help` included, goes through the full CLI.
// Node is started with `--` before this script: Node 20 and 22 take an `--env-file` anywhere
// before a `--` as their own (and exit when its file is missing), and `run --env-file` is ours.
const [, , command, ...rest] = process.argv;
if (command === "rpc" && rest.length === 0) {
  const { runRpc } = (await import(new URL("../../bundle/rpc/rpc.js", import.meta.url).href).catch(bundleMissing)) as typeof import("./rpc.js");
  await runRpc();
} else {
  const { runCli } = await import("./program.js");
  runCli(process.argv);
}

/** A build by tsc alone (e.g. `tsc --watch`) has no bundle: run the same engine unbundled. */
function bundleMissing(err: NodeJS.ErrnoException): Promise<typeof import("./rpc.js")> {
  if (err.code !== "ERR_MODULE_NOT_FOUND" || !String(err.message).includes("bundle/rpc/rpc.js")) throw err;
  return import("./rpc.js");
}
