// Values computed from files, kept in this engine for as long as the files stay the same: an
// engine starts many VMs from the same kernel, modules and agent, and reading them again for each
// start cost tens of milliseconds.
import { stat } from "node:fs/promises";

/** Path, device, inode, size, change and modification times in ns: a file rewritten or replaced gets a new one. */
async function fileIdentity(file: string): Promise<string> {
  const st = await stat(file, { bigint: true });
  return `${file}\0${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

export class FileMemo<T> {
  private readonly known = new Map<string, T>();

  /** What `compute` made of `files` (and `salt`, anything else it depends on), computed once per identity. */
  async get(files: string[], compute: () => Promise<T> | T, salt = ""): Promise<T> {
    const key = `${salt}\0${(await Promise.all(files.map(fileIdentity))).join("\0")}`;
    if (this.known.has(key)) return this.known.get(key)!;
    const value = await compute();
    this.known.set(key, value);
    return value;
  }
}
