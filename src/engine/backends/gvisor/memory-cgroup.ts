// The sandbox's host memory cgroup, made by the engine before `runsc run` so that the engine can
// tell an out-of-memory death from any other. gVisor's memory limit is the host cgroup's: when
// the sandbox exceeds it, the host kernel's OOM killer kills the whole sandbox (the Sentry), and
// all the engine sees is its agent channel closing. runsc uses a cgroup that already exists as it
// is ("set up by the caller": it neither configures nor removes it), so the engine sets the limit,
// reads the OOM-kill counter when the sandbox dies, and removes the cgroup itself
// (removeSandboxCgroups, with those runsc made for the other controllers).
import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** The parent of every sandbox's cgroup; the OCI bundle's cgroupsPath is /matchlock/<id>. */
export const CGROUP_PARENT = "matchlock";

const V1_MEMORY = "/sys/fs/cgroup/memory";
const V2_ROOT = "/sys/fs/cgroup";

interface Layout {
  dir: string;
  limitFile: string;
  /** The file whose "oom_kill N" line counts OOM kills in this cgroup. */
  eventsFile: string;
}

function layoutFor(id: string): Layout | undefined {
  if (existsSync(join(V1_MEMORY, "memory.limit_in_bytes"))) {
    const dir = join(V1_MEMORY, CGROUP_PARENT, id);
    return { dir, limitFile: join(dir, "memory.limit_in_bytes"), eventsFile: join(dir, "memory.oom_control") };
  }
  if (existsSync(join(V2_ROOT, "cgroup.controllers"))) {
    const dir = join(V2_ROOT, CGROUP_PARENT, id);
    return { dir, limitFile: join(dir, "memory.max"), eventsFile: join(dir, "memory.events") };
  }
  return undefined;
}

export class MemoryCgroup {
  private constructor(private readonly layout: Layout, readonly limitBytes: number) {}

  /**
   * Creates the cgroup with its limit. Undefined when this host has no memory controller we
   * know: runsc then makes the cgroup itself, and an OOM death is reported as a plain loss.
   */
  static async create(id: string, limitBytes: number): Promise<MemoryCgroup | undefined> {
    const layout = layoutFor(id);
    if (!layout) return undefined;
    try {
      await mkdir(layout.dir, { recursive: true });
      await writeFile(layout.limitFile, String(limitBytes));
    } catch {
      await rmdir(layout.dir).catch(() => {});
      return undefined;
    }
    return new MemoryCgroup(layout, limitBytes);
  }

  /** How many processes the OOM killer killed in this cgroup (0 if it cannot be read). */
  async oomKills(): Promise<number> {
    const text = await readFile(this.layout.eventsFile, "utf8").catch(() => "");
    const m = /^oom_kill (\d+)$/m.exec(text);
    return m ? Number(m[1]) : 0;
  }
}

/**
 * Removes every cgroup of a dead sandbox: our memory cgroup, and those runsc made for the other
 * controllers, which it never gets to remove when it is killed before recording its container
 * (early in create). Returns the controllers it removed.
 */
export async function removeSandboxCgroups(id: string): Promise<string[]> {
  const dirs = existsSync(join(V1_MEMORY, "memory.limit_in_bytes"))
    ? (await readdir(V2_ROOT).catch(() => [] as string[])).map((c) => join(V2_ROOT, c, CGROUP_PARENT, id))
    : [join(V2_ROOT, CGROUP_PARENT, id)];
  const removed: string[] = [];
  for (const dir of dirs.filter((d) => existsSync(d))) {
    await removeCgroupDir(dir);
    if (!existsSync(dir)) removed.push(dir.split("/")[4] ?? dir);
  }
  return removed;
}

async function removeCgroupDir(dir: string): Promise<void> {
  // A SIGKILLed sandbox with a large memory image can take seconds to exit on a loaded host.
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      await sleep(100); // EBUSY: a killed process has not exited yet
    }
  }
}
