// A pid alone does not name a process for long: after its owner dies the kernel hands the number
// to someone else. A pid plus its start time does.
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";

/**
 * Whether some process has this pid (ours or not: EPERM means it exists) and still runs. A zombie
 * does not: it is dead and only waits to be reaped, which a parent that died itself (the client
 * of a killed engine) leaves to init, in init's own time.
 */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  try {
    return !isDead(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return true; // no /proc: kill(0) has the last word
  }
}

/** Field 22 of /proc/<pid>/stat: the process's start time (clock ticks since boot); none once dead. */
export async function processStart(pid: number): Promise<string | undefined> {
  if (!(pid > 0)) return undefined;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    return isDead(stat) ? undefined : afterName(stat)[19];
  } catch {
    return undefined;
  }
}

/** The fields after "(comm)", which may itself hold spaces and parentheses. */
function afterName(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** State Z (zombie) or X (dead): the process has exited. */
function isDead(stat: string): boolean {
  return /^[ZX]$/.test(afterName(stat)[0] ?? "");
}

/** True while the process that had `pid` when `start` was recorded is still alive. */
export async function sameProcessAlive(pid: number, start: string): Promise<boolean> {
  const now = await processStart(pid);
  return now !== undefined && now === start;
}
