// The host CPUs a gVisor sandbox may run on. runsc gives its guest as many CPUs as its own
// process may run on (its affinity, which the sandbox's cpuset sets), so a cpuset of ceil(cpus)
// CPUs is what makes the guest see ceil(cpus) CPUs; the CPU quota then caps the time to `cpus`.
// (runsc's --cpu-num-from-quota would show at least 2.) Each sandbox starts its set at a place
// picked from its id, so that sandboxes spread over the host's CPUs instead of piling on CPU 0.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** "0-3,6" -> [0, 1, 2, 3, 6]. */
export function parseCpuList(list: string): number[] {
  const cpus: number[] = [];
  for (const part of list.trim().split(",").filter(Boolean)) {
    const [from, to = from] = part.split("-").map(Number);
    if (!Number.isInteger(from) || !Number.isInteger(to)) throw new Error(`not a CPU list: ${JSON.stringify(list)}`);
    for (let c = from!; c <= to!; c++) cpus.push(c);
  }
  return cpus;
}

/** The CPUs this process may run on. */
export function allowedCpus(status = readFileSync("/proc/self/status", "utf8")): number[] {
  const list = /^Cpus_allowed_list:\s*(\S+)$/m.exec(status)?.[1];
  if (!list) throw new Error("/proc/self/status has no Cpus_allowed_list");
  return parseCpuList(list);
}

/** A cpuset of `count` of the `allowed` CPUs (all of them when there are not that many), placed by `seed`. */
export function cpuSetFor(seed: string, count: number, allowed: readonly number[]): string {
  const n = Math.min(Math.max(1, count), allowed.length);
  const start = createHash("sha256").update(seed).digest().readUInt32BE(0) % allowed.length;
  const chosen = Array.from({ length: n }, (_, i) => allowed[(start + i) % allowed.length]!);
  return chosen.sort((a, b) => a - b).join(",");
}

const V1_CPUSET = "/sys/fs/cgroup/cpuset";

/**
 * On a cgroup v1 host, the sandboxes' parent cpuset (/matchlock) must itself hold CPUs and memory
 * nodes before a child can take any: v1 does not fill them in for a new cpuset, and runsc, making
 * the parent on the way to the sandbox's own, leaves them empty (its write of the sandbox's
 * cpuset then fails with EACCES). The parent gets the root's; cgroup v2 needs nothing.
 */
export async function prepareCpusetParent(parent: string): Promise<void> {
  if (!existsSync(join(V1_CPUSET, "cpuset.cpus"))) return;
  const dir = join(V1_CPUSET, parent);
  try {
    await mkdir(dir, { recursive: true });
    for (const file of ["cpuset.cpus", "cpuset.mems"]) {
      if ((await readFile(join(dir, file), "utf8")).trim() !== "") continue;
      await writeFile(join(dir, file), (await readFile(join(V1_CPUSET, file), "utf8")).trim());
    }
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === "EACCES" || e.code === "EPERM" || e.code === "EROFS" ? " (this needs root, with a writable /sys/fs/cgroup)" : "";
    throw new Error(`cannot prepare the sandboxes' cpuset ${dir}: ${e.message}${why}`);
  }
}
