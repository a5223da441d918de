// Fractional cpus on the micro-VM: the VM gets ceil(cpus) vCPUs (-smp) and its QEMU process a
// host CPU quota of `cpus` in a cgroup of its own (/matchlock/<id>, as gVisor's sandboxes). QEMU
// joins it before it starts (the command is wrapped), so none of its threads escape the quota.
// Whole cpus need no quota: a VM cannot run guest code on more host CPUs than it has vCPUs.
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CGROUP_PARENT, removeCgroupDir } from "../gvisor/memory-cgroup.js";

const PERIOD_US = 100_000;
const ROOT = "/sys/fs/cgroup";

/** The cgroup directory of a micro-VM's quota, on this host's cgroup layout. */
function quotaDir(id: string): string {
  return existsSync(join(ROOT, "cgroup.controllers")) ? join(ROOT, CGROUP_PARENT, id) : join(ROOT, "cpu", CGROUP_PARENT, id);
}

export interface CpuQuota {
  /** `command` wrapped so that it joins the quota's cgroup before it runs. */
  wrap(command: string, args: string[]): [string, string[]];
  remove(): Promise<void>;
}

/** Makes the quota's cgroup for fractional `cpus`; undefined for whole ones. */
export async function cpuQuotaFor(id: string, cpus: number): Promise<CpuQuota | undefined> {
  if (Number.isInteger(cpus)) return undefined;
  const dir = quotaDir(id);
  const quota = Math.round(cpus * PERIOD_US);
  try {
    if (dir.startsWith(join(ROOT, CGROUP_PARENT))) {
      // cgroup v2: the cpu controller must be enabled down to our parent.
      await mkdir(join(ROOT, CGROUP_PARENT), { recursive: true });
      await writeFile(join(ROOT, "cgroup.subtree_control"), "+cpu");
      await writeFile(join(ROOT, CGROUP_PARENT, "cgroup.subtree_control"), "+cpu");
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, "cpu.max"), `${quota} ${PERIOD_US}`);
    } else {
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, "cpu.cfs_period_us"), String(PERIOD_US));
      await writeFile(join(dir, "cpu.cfs_quota_us"), String(quota));
    }
  } catch (err) {
    await removeCgroupDir(dir, 0).catch(() => undefined);
    const e = err as NodeJS.ErrnoException;
    const why = e.code === "EACCES" || e.code === "EPERM" || e.code === "EROFS" ? " (making a cgroup needs root, with a writable /sys/fs/cgroup)" : "";
    throw new Error(`fractional cpus (${cpus}) need a CPU quota cgroup for QEMU, which could not be made at ${dir}: ${e.message}${why}; whole cpus need none`);
  }
  const procs = join(dir, "cgroup.procs");
  return {
    wrap: (command, args) => ["/bin/sh", ["-c", 'echo $$ > "$0" && exec "$@"', procs, command, ...args]],
    remove: () => removeCgroupDir(dir),
  };
}

/** Removes a micro-VM's quota cgroup left by an engine that died (nothing when there is none). */
export function removeCpuQuota(id: string): Promise<void> {
  return removeCgroupDir(quotaDir(id));
}
