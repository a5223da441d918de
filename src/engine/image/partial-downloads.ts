// Blob downloads in progress, kept outside any one pull's work dir so that when a pull dies (or
// fails on the network) the next pull of the same blob continues where it stopped, with an HTTP
// Range request, instead of starting over: <root>/partial/<hex>-<pid>-<rand>.
// A partial file belongs to the live process named in it; a dead process's file is taken over by
// renaming it (atomic: of two takers only one succeeds).
import { randomBytes } from "node:crypto";
import { mkdir, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { pidAlive } from "../process-identity.js";

const NAME = /^([a-f0-9]{64})-(\d+)-[a-f0-9]+$/;

/** This process's partial files being written right now (a failed one may be resumed by us). */
const active = new Set<string>();

export class PartialDownloads {
  constructor(readonly dir: string) {}

  /**
   * A file for this process to download blob `hex` into, marked busy until release(): a partial
   * download of it that nobody is writing, taken over, or else a new (absent) file.
   */
  async claim(hex: string): Promise<string> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const mine = join(this.dir, `${hex}-${process.pid}-${randomBytes(6).toString("hex")}`);
    for (const name of await readdir(this.dir)) {
      const m = NAME.exec(name);
      if (!m || m[1] !== hex) continue;
      const path = join(this.dir, name);
      const pid = Number(m[2]);
      const idle = pid === process.pid ? !active.has(path) : !pidAlive(pid);
      if (!idle) continue;
      try {
        await rename(path, mine);
        break;
      } catch {
        // another process took it first
      }
    }
    active.add(mine);
    return mine;
  }

  release(file: string): void {
    active.delete(file);
  }

  /** Deletes partial downloads nobody is writing (for prune); returns how many. */
  async sweep(): Promise<number> {
    let n = 0;
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      const m = NAME.exec(name);
      const path = join(this.dir, name);
      if (!m || (Number(m[2]) === process.pid ? active.has(path) : pidAlive(Number(m[2])))) continue;
      await rm(path, { force: true });
      n++;
    }
    return n;
  }
}
