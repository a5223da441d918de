// Start-up timestamps, for finding where a sandbox's cold start goes. With
// MATCHLOCK_TRACE_STARTUP=1 the engine writes "matchlock: startup +123.4 ms <step>" lines on
// stderr, timed from the start of its process (Node's performance time origin). Off by default:
// then each call is one boolean test.
import { settings } from "../../settings/settings.js";

const enabled = settings.traceStartup.read() === "1";

export function traceStartup(step: string): void {
  if (enabled) process.stderr.write(`matchlock: startup +${performance.now().toFixed(1)} ms ${step}\n`);
}
