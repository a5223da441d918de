// Two kernels mounting one ext4 read-write corrupt it, so a disk (a named volume or a host image)
// attached read-write belongs to one running sandbox; read-only, any number may share it (none
// writes: a read-only disk with a journal to replay is refused, see extra-disks.ts). Each disk
// has a directory named after its real path, and each sandbox that attaches it an entry there,
// <vm id>.rw or <vm id>.ro. A sandbox first adds its entry, then looks at the others: of two
// sandboxes racing for a disk, at least one sees the other and backs out. An entry whose
// sandbox is no longer running (stopped, removed, or its engine dead) is stale and ignored, so a
// killed engine never leaves a disk held for good.
import { createHash } from "node:crypto";
import { mkdir, readdir, rm, rmdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";
import { paths } from "../paths.js";
import { ownerAlive, readVm } from "../sandbox/state.js";

/** The disk is attached to another running sandbox in a way that excludes this use. */
export class DiskInUseError extends EngineError {
  readonly kind: ErrorKind = "policy_refused";
}

export interface DiskHolder {
  vmId: string;
  readonly: boolean;
}

/** A disk's holds are kept per file (device and inode), so no other name of it (a hard link) escapes them. */
async function lockDir(hostPath: string): Promise<string> {
  const st = await stat(hostPath);
  return join(paths.diskLocks(), createHash("sha256").update(`${st.dev}:${st.ino}`).digest("hex").slice(0, 32));
}

async function running(vmId: string): Promise<boolean> {
  const vm = await readVm(vmId);
  return vm !== undefined && vm.status === "running" && (await ownerAlive(vm));
}

async function entries(dir: string): Promise<DiskHolder[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.flatMap((n) => {
    const m = /^(vm-[0-9a-f]{8})\.(ro|rw)$/.exec(n);
    return m ? [{ vmId: m[1]!, readonly: m[2] === "ro" }] : [];
  });
}

/** The running sandboxes that have the disk attached (stale entries are removed on the way). */
export async function diskHolders(hostPath: string): Promise<DiskHolder[]> {
  const dir = await lockDir(hostPath).catch(() => undefined);
  if (!dir) return [];
  const live: DiskHolder[] = [];
  for (const e of await entries(dir)) {
    if (await running(e.vmId)) live.push(e);
    else await rm(join(dir, `${e.vmId}.${e.readonly ? "ro" : "rw"}`), { force: true });
  }
  return live;
}

/** Takes the disk for `vmId`; a DiskInUseError names the running sandbox in the way. */
export async function lockDisk(vmId: string, hostPath: string, readonly: boolean, what: string): Promise<void> {
  const dir = await lockDir(hostPath);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const own = join(dir, `${vmId}.${readonly ? "ro" : "rw"}`);
  try {
    await writeFile(own, "", { flag: "wx", mode: 0o600 });
  } catch (err) {
    // Two paths of one file (a link): one file system mounted twice in one sandbox.
    if ((err as NodeJS.ErrnoException).code === "EEXIST") throw new DiskInUseError(`${what}: the same file is attached twice to this sandbox`);
    throw err;
  }
  const others = (await diskHolders(hostPath)).filter((h) => h.vmId !== vmId);
  if ((await entries(dir)).some((e) => e.vmId === vmId && e.readonly !== readonly)) {
    await rm(own, { force: true });
    throw new DiskInUseError(`${what}: the same file is attached twice to this sandbox`);
  }
  const conflict = others.find((h) => !readonly || !h.readonly);
  if (conflict) {
    await rm(own, { force: true });
    throw inUse(what, conflict);
  }
}

export function inUse(what: string, holder: DiskHolder): DiskInUseError {
  const how = holder.readonly ? "read-only" : "read-write";
  return new DiskInUseError(`${what} is in use by sandbox ${holder.vmId} (${how}): a disk attached read-write belongs to one running sandbox; read-only, several may share it`);
}

/** Releases the disks `vmId` holds. */
export async function unlockDisks(vmId: string, hostPaths: readonly string[]): Promise<void> {
  for (const hostPath of hostPaths) {
    const dir = await lockDir(hostPath).catch(() => undefined);
    if (!dir) continue;
    await rm(join(dir, `${vmId}.rw`), { force: true });
    await rm(join(dir, `${vmId}.ro`), { force: true });
    await rmdir(dir).catch(() => {}); // only when no other sandbox holds it
  }
}
