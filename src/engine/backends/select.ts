// Which isolation engine runs a sandbox: $MATCHLOCK_BACKEND (gvisor | auto). The QEMU micro-VM
// engine will join here; until then asking for it is a clear error, not a silent fallback.
import { BackendUnavailableError, type Backend } from "./backend.js";
import { GvisorBackend } from "./gvisor/runsc.js";

export async function defaultBackend(): Promise<Backend> {
  const wanted = process.env.MATCHLOCK_BACKEND || "auto";
  switch (wanted) {
    case "auto":
    case "gvisor":
      return new GvisorBackend();
    case "microvm":
      throw new BackendUnavailableError("the micro-VM backend is not available in this version: use MATCHLOCK_BACKEND=gvisor");
    default:
      throw new BackendUnavailableError(`unknown backend ${JSON.stringify(wanted)} in MATCHLOCK_BACKEND (use gvisor or auto)`);
  }
}

/** Every backend this engine knows, for reclaiming leftovers whatever engine made them. */
export function allBackends(): Backend[] {
  return [new GvisorBackend()];
}
