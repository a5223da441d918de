// A pid alone does not name a process for long: after its owner dies the kernel hands the number
// to someone else. A pid plus its start time does.
import { readFile } from "node:fs/promises";

/** Whether some process has this pid (ours or not: EPERM means it exists). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Field 22 of /proc/<pid>/stat: the process's start time (clock ticks since boot). */
export async function processStart(pid: number): Promise<string | undefined> {
  if (!(pid > 0)) return undefined;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** True while the process that had `pid` when `start` was recorded is still alive. */
export async function sameProcessAlive(pid: number, start: string): Promise<boolean> {
  const now = await processStart(pid);
  return now !== undefined && now === start;
}
