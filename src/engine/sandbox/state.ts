// On-disk record of every sandbox, in the layout of the protocol spec (3.3):
//   <home>/vms/<id>/{pid,status,created_at,config.json,logs/vm.log}
// `pid` is the owning engine process; a record that says "running" with a dead owner is crashed.
import { randomBytes } from "node:crypto";
import { mkdir, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { paths } from "../paths.js";
import { pidAlive, processStart, sameProcessAlive } from "../process-identity.js";
import { removeSnapshotDisk } from "../vfs/snapshot-disk.js";

export type VmStatus = "running" | "stopped" | "crashed";

export interface VmRecord {
  id: string;
  pid: number;
  /** The owner's start time (see process-identity.ts); "" in records of older engines. */
  pidStart: string;
  status: VmStatus;
  image: string;
  createdAt: string;
  config: Record<string, unknown> | undefined;
  /** A warm spare a resident engine booted ahead and has not handed to a client yet (see warm-pool.ts). */
  spare: boolean;
}

export const VM_ID_PATTERN = /^vm-[0-9a-f]{8}$/;

export function newVmId(): string {
  return `vm-${randomBytes(4).toString("hex")}`;
}

export function logFile(id: string): string {
  return join(paths.vm(id), "logs", "vm.log");
}

/**
 * Set by `matchlock serve`: its records say their owner is a resident engine, which runs many
 * sandboxes, so `kill` must not SIGTERM it (see requestStop).
 */
let residentSocket: string | undefined;
export function recordsOwnedByResidentEngine(socketPath: string): void {
  residentSocket = socketPath;
}

/** `spare`: the record of a warm spare, which `list` leaves out until a client takes it (unmarkSpare). */
export async function createVmRecord(id: string, config: Record<string, unknown>, spare = false): Promise<string> {
  const dir = paths.vm(id);
  await mkdir(join(dir, "logs"), { recursive: true, mode: 0o700 });
  // Written together, but "running" only after the owner: a record read in between must never
  // look like a running sandbox whose owner is dead.
  await Promise.all([
    writeFile(join(dir, "config.json"), JSON.stringify(config, null, 2), { mode: 0o600 }),
    writeFile(join(dir, "created_at"), new Date().toISOString()),
    writeFile(join(dir, "pid"), String(process.pid)),
    processStart(process.pid).then((start) => writeFile(join(dir, "pid_start"), start ?? "")),
    residentSocket ? writeFile(join(dir, "owner_kind"), "resident") : undefined,
    residentSocket ? advertiseEngineSocket(id, residentSocket) : undefined,
    spare ? writeFile(join(dir, SPARE_FILE), "") : undefined,
  ]);
  await writeFile(join(dir, "status"), "running");
  return dir;
}

/**
 * Writes a runtime change (the allow-list) into the record's config.json: the whole file, by a
 * rename, so that a reader (`matchlock get`) never sees half of it. Callers serialize their own.
 */
export async function updateVmConfig(id: string, change: (config: Record<string, unknown>) => void): Promise<void> {
  const file = join(paths.vm(id), "config.json");
  const config = JSON.parse((await readText(file)) ?? "{}") as Record<string, unknown>;
  change(config);
  await writeFile(`${file}.new`, JSON.stringify(config, null, 2), { mode: 0o600 });
  await rename(`${file}.new`, file);
}

const SPARE_FILE = "spare";

/** A client took the warm spare: from now on it is a sandbox like any other, created now for its client. */
export async function unmarkSpare(id: string): Promise<void> {
  await writeFile(join(paths.vm(id), "created_at"), new Date().toISOString());
  await rm(join(paths.vm(id), SPARE_FILE), { force: true });
}

export async function markStopped(id: string): Promise<void> {
  const dir = paths.vm(id);
  await writeFile(join(dir, "status"), "stopped").catch(() => {});
  await rm(join(dir, "pid"), { force: true });
  await rm(join(dir, "pid_start"), { force: true });
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return (await readFile(file, "utf8")).trim();
  } catch {
    return undefined;
  }
}

/**
 * Whether the sandbox's owning engine still runs: its pid, and (when recorded) the same start
 * time, so a pid the kernel gave to another process after the owner died does not count.
 */
export async function ownerAlive(vm: VmRecord): Promise<boolean> {
  if (!pidAlive(vm.pid)) return false;
  return vm.pidStart ? sameProcessAlive(vm.pid, vm.pidStart) : true;
}

/** Reads one record, or undefined when there is no such sandbox. Never throws for bad ids. */
export async function readVm(id: string): Promise<VmRecord | undefined> {
  if (!VM_ID_PATTERN.test(id)) return undefined;
  const dir = paths.vm(id);
  const status = await readText(join(dir, "status"));
  if (status === undefined) return undefined;
  let config: Record<string, unknown> | undefined;
  try {
    config = JSON.parse((await readText(join(dir, "config.json"))) ?? "null") ?? undefined;
  } catch {
    config = undefined;
  }
  return {
    id,
    pid: Number(await readText(join(dir, "pid"))) || 0,
    pidStart: (await readText(join(dir, "pid_start"))) ?? "",
    status: (["running", "stopped", "crashed"].includes(status) ? status : "crashed") as VmStatus,
    image: typeof config?.image === "string" ? config.image : "",
    createdAt: (await readText(join(dir, "created_at"))) ?? "",
    config,
    spare: (await readText(join(dir, SPARE_FILE))) !== undefined,
  };
}

/** A "running" record whose owner is gone is persisted as crashed (as `list` does upstream). */
export async function reconcile(vm: VmRecord): Promise<VmRecord> {
  if (vm.status === "running" && !(await ownerAlive(vm))) {
    await writeFile(join(paths.vm(vm.id), "status"), "crashed").catch(() => {});
    return { ...vm, status: "crashed" };
  }
  return vm;
}

export async function listVms(): Promise<VmRecord[]> {
  let names: string[];
  try {
    names = await readdir(paths.vms());
  } catch {
    return [];
  }
  const vms = await Promise.all(names.filter((n) => VM_ID_PATTERN.test(n)).map(readVm));
  const found = vms.filter((v): v is VmRecord => v !== undefined);
  const reconciled = await Promise.all(found.map(reconcile));
  return reconciled.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

/**
 * Asks a running sandbox's owner to stop it. A `matchlock rpc` owns just this one: SIGTERM. A
 * resident engine owns many: it gets a request file and SIGUSR2, and stops only that sandbox.
 */
export async function requestStop(vm: VmRecord): Promise<void> {
  const dir = paths.vm(vm.id);
  if ((await readText(join(dir, "owner_kind"))) === "resident") {
    await writeFile(join(dir, "stop_requested"), "");
    process.kill(vm.pid, "SIGUSR2");
  } else {
    process.kill(vm.pid, "SIGTERM");
  }
}

/** Records where `matchlock exec` reaches the engine that runs this sandbox (see ownerSocket). */
export async function advertiseEngineSocket(id: string, socketPath: string): Promise<void> {
  await writeFile(join(paths.vm(id), "engine_socket"), socketPath, { mode: 0o600 });
}

/** The socket of the engine that runs this sandbox and serves `attach` to it; undefined when it serves none. */
export async function ownerSocket(id: string): Promise<string | undefined> {
  return (await readText(join(paths.vm(id), "engine_socket"))) || undefined;
}

/** For the resident engine: whether `kill` asked to stop this sandbox (the request is consumed). */
export async function takeStopRequest(id: string): Promise<boolean> {
  try {
    await rm(join(paths.vm(id), "stop_requested"));
    return true;
  } catch {
    return false;
  }
}

export async function removeVmDir(id: string): Promise<void> {
  // Its overlay snapshots' disk first: a mounted file system would stop the rm half-way.
  await removeSnapshotDisk(paths.vm(id));
  await rm(paths.vm(id), { recursive: true, force: true });
}
