// Bytes of file content under a directory, hard links counted once (like `du --apparent-size`).
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";

export async function treeSize(dir: string): Promise<number> {
  const seen = new Set<number>();
  let total = 0;
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        await walk(p);
      } else if (e.isFile()) {
        const st = await lstat(p);
        if (st.nlink > 1) {
          if (seen.has(st.ino)) continue;
          seen.add(st.ino);
        }
        total += st.size;
      }
    }
  };
  await walk(dir);
  return total;
}
