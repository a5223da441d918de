// The sandbox's host cgroups, as runsc makes them (cgroupsPath /matchlock/<id>). gVisor's memory
// limit is the host memory cgroup's: when the sandbox exceeds it, the host kernel's OOM killer
// kills the whole sandbox (the Sentry), and all the engine sees is its agent channel closing.
// The cgroup's OOM-kill counter, or (runsc often removes the cgroup first) the kernel log's
// record of the kill, which names the cgroup, tells an out-of-memory death from any other.
// A runsc killed early in `run` never removes the cgroups it made: gc does (removeSandboxCgroups).
import { closeSync, constants, existsSync, openSync, readSync } from "node:fs";
import { readFile, readdir, rmdir } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** The parent of every sandbox's cgroup; the OCI bundle's cgroupsPath is /matchlock/<id>. */
export const CGROUP_PARENT = "matchlock";

const V1_MEMORY = "/sys/fs/cgroup/memory";
const V2_ROOT = "/sys/fs/cgroup";

interface Layout {
  dir: string;
  /** The file whose "oom_kill N" line counts OOM kills in this cgroup. */
  eventsFile: string;
}

function layoutFor(id: string): Layout | undefined {
  if (existsSync(join(V1_MEMORY, "memory.limit_in_bytes"))) {
    const dir = join(V1_MEMORY, CGROUP_PARENT, id);
    return { dir, eventsFile: join(dir, "memory.oom_control") };
  }
  if (existsSync(join(V2_ROOT, "cgroup.controllers"))) {
    const dir = join(V2_ROOT, CGROUP_PARENT, id);
    return { dir, eventsFile: join(dir, "memory.events") };
  }
  return undefined;
}

export class MemoryCgroup {
  private constructor(private readonly layout: Layout, private readonly id: string) {}

  /** The memory cgroup runsc makes for the sandbox; undefined on a host without one we know. */
  static of(id: string): MemoryCgroup | undefined {
    const layout = layoutFor(id);
    return layout && new MemoryCgroup(layout, id);
  }

  /**
   * Whether the OOM killer killed anything in this cgroup: its counter while the cgroup is
   * there, else the kernel log's record of the kill, which names the cgroup (runsc may have
   * removed the cgroup by the time the engine notices the death).
   */
  async oomKilled(): Promise<boolean> {
    const text = await readFile(this.layout.eventsFile, "utf8").catch(() => "");
    const m = /^oom_kill (\d+)$/m.exec(text);
    if (m) return Number(m[1]) > 0;
    return kernelLogNamesOomOf(`/${CGROUP_PARENT}/${this.id}`);
  }
}

/**
 * Whether the sandbox's pids cgroup ever refused a task (its "max" event), while the cgroup is
 * there: runsc may remove it first, and then the loss stays unexplained.
 */
export async function hostTaskLimitReached(id: string): Promise<boolean> {
  const v1 = join(V2_ROOT, "pids", CGROUP_PARENT, id, "pids.events");
  const v2 = join(V2_ROOT, CGROUP_PARENT, id, "pids.events");
  const text = (await readFile(v1, "utf8").catch(() => undefined)) ?? (await readFile(v2, "utf8").catch(() => ""));
  const m = /^max (\d+)$/m.exec(text);
  return m !== null && Number(m[1]) > 0;
}

/** Scans the kernel log (/dev/kmsg, root only) for an OOM kill in memory cgroup `cgroup`. */
function kernelLogNamesOomOf(cgroup: string): boolean {
  let fd: number;
  try {
    fd = openSync("/dev/kmsg", constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return false;
  }
  const record = Buffer.alloc(8192);
  const needle = `oom_memcg=${cgroup},`;
  try {
    for (let i = 0; i < 200_000; i++) {
      let n: number;
      try {
        n = readSync(fd, record, 0, record.length, null);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EPIPE") continue; // a record was overwritten
        return false; // EAGAIN: the end of the log
      }
      if (n === 0) return false;
      if (record.toString("utf8", 0, n).includes(needle)) return true;
    }
    return false;
  } finally {
    closeSync(fd);
  }
}

/**
 * Removes every cgroup of a dead sandbox: our memory cgroup, and those runsc made for the other
 * controllers, which it never gets to remove when it is killed before recording its container
 * (early in create). Returns the controllers it removed; one it cannot remove is logged.
 */
export async function removeSandboxCgroups(id: string): Promise<string[]> {
  const dirs = existsSync(join(V1_MEMORY, "memory.limit_in_bytes"))
    ? (await readdir(V2_ROOT).catch(() => [] as string[])).map((c) => join(V2_ROOT, c, CGROUP_PARENT, id))
    : [join(V2_ROOT, CGROUP_PARENT, id)];
  const removed: string[] = [];
  for (const dir of dirs.filter((d) => existsSync(d))) {
    try {
      await removeCgroupDir(dir);
      removed.push(dir.split("/")[4] ?? dir);
    } catch (err) {
      process.stderr.write(`matchlock: ${(err as Error).message}\n`); // the engine's log
    }
  }
  return removed;
}

/** How long a cgroup that still has members (EBUSY) is waited for. */
export const CGROUP_BUSY_WAIT_MS = 10_000;

/**
 * Removes one cgroup directory. Only EBUSY is worth waiting for (a SIGKILLed sandbox with a large
 * memory image can take seconds to exit on a loaded host); a cgroup already gone is done; any
 * other error (EACCES, EROFS, ENOTEMPTY for something that is not a cgroup...) fails at once.
 */
export async function removeCgroupDir(dir: string, busyWaitMs = CGROUP_BUSY_WAIT_MS): Promise<void> {
  const deadline = Date.now() + busyWaitMs;
  for (;;) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return;
      if (code !== "EBUSY") throw new Error(`cannot remove cgroup ${dir}: ${(err as Error).message}`);
      if (Date.now() >= deadline) throw new Error(`cannot remove cgroup ${dir}: its processes did not exit within ${busyWaitMs / 1000} s (EBUSY)`);
      await sleep(100);
    }
  }
}
