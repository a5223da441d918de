// A disk (a named volume or a host image) is attached to one sandbox at a time: two kernels
// mounting the same ext4 read-write corrupt it. Each attached disk has a lock file named after
// its real path, created exclusively and holding the sandbox's id. A lock whose sandbox is no
// longer running (stopped, removed, or its engine dead) is stale and taken over, so a killed
// engine never leaves a disk locked for good.
import { createHash } from "node:crypto";
import { mkdir, readFile, realpath, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";
import { paths } from "../paths.js";
import { ownerAlive, readVm } from "../sandbox/state.js";

/** The disk is attached to another running sandbox. */
export class DiskInUseError extends EngineError {
  readonly kind: ErrorKind = "policy_refused";
}

async function lockFile(hostPath: string): Promise<string> {
  const real = await realpath(hostPath);
  return join(paths.diskLocks(), createHash("sha256").update(real).digest("hex").slice(0, 32));
}

/** The running sandbox that holds the disk, if any. */
export async function diskHolder(hostPath: string): Promise<string | undefined> {
  const file = await lockFile(hostPath).catch(() => undefined);
  if (!file) return undefined;
  const holder = (await readFile(file, "utf8").catch(() => "")).trim();
  if (!holder) return undefined;
  const vm = await readVm(holder);
  return vm && vm.status === "running" && (await ownerAlive(vm)) ? holder : undefined;
}

/** Takes the disk for `vmId`; a DiskInUseError names the running sandbox that has it. */
export async function lockDisk(vmId: string, hostPath: string, what: string): Promise<void> {
  const file = await lockFile(hostPath);
  await mkdir(paths.diskLocks(), { recursive: true, mode: 0o700 });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(file, vmId, { flag: "wx", mode: 0o600 });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const holder = await diskHolder(hostPath);
    // Two paths of one file (a link): one file system mounted twice in one sandbox corrupts it as surely.
    if (holder === vmId) throw new DiskInUseError(`${what}: the same file is attached twice to this sandbox`);
    if (holder) throw new DiskInUseError(`${what} is in use by sandbox ${holder}: a disk is attached to one running sandbox at a time`);
    await rm(file, { force: true }); // stale: its sandbox is gone
  }
  throw new DiskInUseError(`${what}: another sandbox took it at the same moment`);
}

/** Releases the disks `vmId` holds (a lock another sandbox took over stays theirs). */
export async function unlockDisks(vmId: string, hostPaths: readonly string[]): Promise<void> {
  for (const hostPath of hostPaths) {
    const file = await lockFile(hostPath).catch(() => undefined);
    if (!file) continue;
    const holder = (await readFile(file, "utf8").catch(() => "")).trim();
    if (holder === vmId) await rm(file, { force: true });
  }
}
