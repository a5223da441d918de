// `matchlock rpc`: the engine process every SDK client starts. It imports only what serving
// needs, since every module loaded here is start-up time each sandbox's first call waits for.
import { reclaimDeadLinks } from "../engine/net/link-allocation.js";
import { serve } from "../engine/rpc/server.js";
import { collectGarbage } from "../engine/sandbox/gc.js";
import { traceStartup } from "../engine/trace/startup.js";

export async function runRpc(): Promise<void> {
  traceStartup("modules loaded");
  const log = (l: string) => process.stderr.write(`matchlock: ${l}\n`);
  // Our stderr is usually a pipe to the client: once the client is gone (SIGKILLed), a log line
  // fails with EPIPE, and an unheard 'error' would kill us in the middle of the teardown that
  // frees its sandbox. Lines nobody can read are dropped instead.
  process.stderr.on("error", () => {});
  // A bug of ours must not take the user's sandbox session down with it: log and carry on.
  process.on("unhandledRejection", (err) => log(`internal error: ${(err as Error)?.stack ?? String(err)}`));
  // Network links left by engines that were killed are freed before this one makes its own.
  await reclaimDeadLinks().catch((err: Error) => log(`reclaiming stale sandbox networks failed: ${err.message}`));
  traceStartup("stale links reclaimed");
  // Reclaim the rest of what engines that died before us left behind; it never blocks serving.
  const gc = collectGarbage()
    .then((rs) => rs.filter((r) => r.cleaned.length).forEach((r) => log(`reclaimed ${r.id}: ${r.cleaned.join(", ")}`)))
    .catch((err: Error) => log(`gc failed: ${err.message}`));
  await serve({ input: process.stdin, output: process.stdout, log });
  // A short session must not cut the reclaim short (a killed sandbox's cgroups can take seconds to go).
  await gc;
  process.exit(0);
}
