// The host CPUs a gVisor sandbox may run on. runsc gives its guest as many CPUs as its own
// process may run on (its affinity, which the sandbox's cpuset sets), so a cpuset of ceil(cpus)
// CPUs is what makes the guest see ceil(cpus) CPUs; the CPU quota then caps the time to `cpus`.
// (runsc's --cpu-num-from-quota would show at least 2.) Each sandbox starts its set at a place
// picked from its id, so that sandboxes spread over the host's CPUs instead of piling on CPU 0.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

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
