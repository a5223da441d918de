// What every engine process (`matchlock rpc`, `matchlock serve`) does before it serves: make
// itself robust to a vanished client and to its own bugs, and reclaim what engines that died
// before it left behind.
import { reclaimDeadLinks } from "../engine/net/link-allocation.js";
import { collectGarbage } from "../engine/sandbox/gc.js";
import { traceStartup } from "../engine/trace/startup.js";
import { guestBinariesProblem } from "./guest-binaries.js";

export const engineLog = (l: string): void => void process.stderr.write(`matchlock: ${l}\n`);

/**
 * Returns the background reclaim of dead engines' sandboxes (wrapped: awaiting this function must
 * not wait for it), which never blocks serving.
 */
export async function prepareEngineProcess(log: (line: string) => void): Promise<{ gc: Promise<void> }> {
  // Our stderr is usually a pipe to the client: once the client is gone (SIGKILLed), a log line
  // fails with EPIPE, and an unheard 'error' would kill us in the middle of the teardown that
  // frees its sandbox. Lines nobody can read are dropped instead.
  process.stderr.on("error", () => {});
  // A bug of ours must not take the user's sandbox session down with it: log and carry on.
  process.on("unhandledRejection", (err) => log(`internal error: ${(err as Error)?.stack ?? String(err)}`));
  const guestProblem = guestBinariesProblem();
  // Network links left by engines that were killed are freed before this one makes its own.
  await reclaimDeadLinks().catch((err: Error) => log(`reclaiming stale sandbox networks failed: ${err.message}`));
  traceStartup("stale links reclaimed");
  // A sandbox started with the wrong agent or init would fail in obscure ways; refuse now, and
  // the client sees this line with the exit status.
  const problem = await guestProblem;
  if (problem) {
    log(`cannot serve: ${problem}`);
    process.exit(1);
  }
  const gc = collectGarbage()
    .then((rs) => rs.filter((r) => r.cleaned.length).forEach((r) => log(`reclaimed ${r.id}: ${r.cleaned.join(", ")}`)))
    .catch((err: Error) => log(`gc failed: ${err.message}`));
  return { gc };
}
