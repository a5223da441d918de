// Which isolation engine runs a sandbox: $MATCHLOCK_BACKEND = microvm | gvisor | auto (default).
// auto: a micro-VM where hardware virtualization is real (KVM), else gVisor where runsc and root
// are available, else a micro-VM under TCG (software emulation, ~2.5 s per boot).
import { BackendUnavailableError, type Backend } from "./backend.js";
import { GvisorBackend } from "./gvisor/runsc.js";
import { MicrovmBackend } from "./microvm/microvm.js";
import { settings } from "../../settings/settings.js";

export const BACKEND_NAMES = ["microvm", "gvisor", "auto"] as const;

export interface BackendChoice {
  backend: Backend;
  /** Why this one, for logs and `matchlock doctor`. */
  reason: string;
}

/** `perSandbox` is the create request's `backend`; without it $MATCHLOCK_BACKEND decides. */
export async function chooseBackend(perSandbox?: string): Promise<BackendChoice> {
  const wanted = perSandbox || settings.backend.read();
  const source = perSandbox ? "asked for by the sandbox" : "MATCHLOCK_BACKEND";
  switch (wanted) {
    case "gvisor":
      return { backend: new GvisorBackend(), reason: `${source}: gvisor` };
    case "microvm":
      return { backend: new MicrovmBackend(), reason: `${source}: microvm` };
    case "auto": {
      const microvm = new MicrovmBackend();
      const accel = await microvm.accel();
      if (accel.accel === "kvm" && (await availability(microvm)) === undefined) {
        return { backend: microvm, reason: `auto: micro-VM with ${accel.reason}` };
      }
      const gvisor = new GvisorBackend();
      const gvisorProblem = await availability(gvisor);
      if (gvisorProblem === undefined) return { backend: gvisor, reason: `auto: gVisor, since a micro-VM would get ${accel.reason}` };
      return { backend: microvm, reason: `auto: micro-VM under ${accel.accel.toUpperCase()} (gVisor unavailable: ${gvisorProblem})` };
    }
    default:
      throw new BackendUnavailableError(`unknown backend ${JSON.stringify(wanted)} in MATCHLOCK_BACKEND (use ${BACKEND_NAMES.join(", ")})`);
  }
}

/** undefined when the backend can run sandboxes here, else why not. */
export async function availability(backend: Backend): Promise<string | undefined> {
  try {
    await backend.checkAvailable();
    return undefined;
  } catch (err) {
    if (err instanceof BackendUnavailableError) return err.message;
    throw err;
  }
}

/** Every backend this engine knows, for reclaiming leftovers whatever engine made them. */
export function allBackends(): Backend[] {
  return [new GvisorBackend(), new MicrovmBackend()];
}
