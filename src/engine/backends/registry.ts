// Every isolation engine this engine can drive, in one list: `auto`, `doctor`, the create
// schema's `backend` values and gc all derive from it. A new backend is a folder with a driver,
// and one line here.
import { settings } from "../../settings/settings.js";
import { BackendUnavailableError, type BackendDriver, type Probe } from "./backend.js";
import { gvisorDriver } from "./gvisor/runsc.js";
import { microvmDriver } from "./microvm/microvm.js";

const DRIVERS: readonly BackendDriver[] = [microvmDriver, gvisorDriver];

/** What a create's `backend` may say: a driver's name, or "auto" (the best usable one here). */
export const BACKEND_CHOICES: readonly string[] = [...DRIVERS.map((d) => d.name), "auto"];

export function drivers(): readonly BackendDriver[] {
  return DRIVERS;
}

export function driverNamed(name: string): BackendDriver | undefined {
  return DRIVERS.find((d) => d.name === name);
}

export interface DriverChoice {
  driver: BackendDriver;
  /** Why this one, for logs and `matchlock doctor`. */
  reason: string;
}

/** Every driver with what its probe found, best rank first. */
export async function probeAll(): Promise<Array<{ driver: BackendDriver; probe: Probe }>> {
  const found = await Promise.all(DRIVERS.map(async (driver) => ({ driver, probe: await driver.probe() })));
  return found.sort((a, b) => b.probe.rank - a.probe.rank);
}

/** `perSandbox` is the create request's `backend`; without it $MATCHLOCK_BACKEND decides. */
export async function chooseDriver(perSandbox?: string): Promise<DriverChoice> {
  const wanted = perSandbox || settings.backend.read();
  const source = perSandbox ? "asked for by the sandbox" : "MATCHLOCK_BACKEND";
  if (wanted !== "auto") {
    const driver = driverNamed(wanted);
    if (!driver) {
      const where = perSandbox ? "asked for by the sandbox" : "in MATCHLOCK_BACKEND";
      throw new BackendUnavailableError(`unknown backend ${JSON.stringify(wanted)} ${where} (use ${BACKEND_CHOICES.join(", ")})`);
    }
    return { driver, reason: `${source}: ${driver.name}` };
  }
  const probes = await probeAll();
  const usable = probes.find((p) => p.probe.problem === undefined);
  if (!usable) {
    throw new BackendUnavailableError(`no isolation engine can run here: ${probes.map((p) => `${p.driver.name}: ${p.probe.problem}`).join("; ")}`);
  }
  const passedOver = probes.filter((p) => p.probe.problem !== undefined).map((p) => `${p.driver.name} unavailable: ${p.probe.problem}`);
  return { driver: usable.driver, reason: `auto: ${usable.driver.name}, ${usable.probe.detail}${passedOver.length ? ` (${passedOver.join("; ")})` : ""}` };
}

/** The driver that made the sandbox a record names; every driver when it names none we know. */
export function driversFor(recorded: unknown): readonly BackendDriver[] {
  const driver = typeof recorded === "string" ? driverNamed(recorded) : undefined;
  return driver ? [driver] : DRIVERS;
}
