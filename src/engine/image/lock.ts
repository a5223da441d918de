// A store-wide lock (a file holding the owner's pid) for the short metadata steps: committing an
// image, adding and removing refs. Several engine processes may share one store. A lock whose
// owner is dead is taken over.
import { open, readFile, unlink } from "node:fs/promises";
import { pidAlive } from "../process-identity.js";
import { setTimeout as sleep } from "node:timers/promises";

const WAIT_MS = 30_000;

async function tryAcquire(file: string): Promise<boolean> {
  try {
    const fh = await open(file, "wx", 0o644);
    await fh.writeFile(String(process.pid));
    await fh.close();
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    const owner = Number((await readFile(file, "utf8").catch(() => "")).trim());
    // An empty file is a lock being written right now: not stale.
    if (owner && !pidAlive(owner)) await unlink(file).catch(() => undefined);
    return false;
  }
}

export async function withLock<T>(file: string, fn: () => Promise<T>, busy = "the image store is busy"): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await tryAcquire(file))) {
    if (Date.now() > deadline) throw new Error(`${busy}: ${file} is held by another process`);
    await sleep(10 + Math.random() * 20);
  }
  try {
    return await fn();
  } finally {
    await unlink(file).catch(() => undefined);
  }
}
