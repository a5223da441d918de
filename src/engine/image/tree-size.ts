// Bytes of file content under a directory, hard links counted once (like `du --apparent-size`),
// and how many entries it holds.
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";

export interface TreeUsage {
  bytes: number;
  /** Files, directories, links and the rest, the top one included. */
  entries: number;
}

/** The usage of a directory tree, or of a single file. */
export async function treeUsage(path: string): Promise<TreeUsage> {
  const seen = new Set<number>();
  const usage = { bytes: 0, entries: 1 };
  const countFile = async (p: string): Promise<void> => {
    const st = await lstat(p);
    if (st.nlink > 1) {
      if (seen.has(st.ino)) return;
      seen.add(st.ino);
    }
    usage.bytes += st.size;
  };
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      usage.entries++;
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) await countFile(p);
    }
  };
  if ((await lstat(path)).isDirectory()) await walk(path);
  else await countFile(path);
  return usage;
}

export async function treeSize(dir: string): Promise<number> {
  return (await treeUsage(dir)).bytes;
}
