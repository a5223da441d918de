// Content-keyed build products (initramfs, root images): built once into a temporary file next
// to the target and renamed into place, so readers never see a partial file and concurrent
// engines building the same key simply race to an identical result.
import { randomBytes } from "node:crypto";
import { access, chmod, mkdir, rm, rename } from "node:fs/promises";
import { dirname } from "node:path";

const inFlight = new Map<string, Promise<string>>();

export function buildOnce(target: string, build: (tmp: string) => Promise<void>): Promise<string> {
  let p = inFlight.get(target);
  if (!p) {
    p = (async () => {
      if (await access(target).then(() => true, () => false)) return target;
      await mkdir(dirname(target), { recursive: true });
      const tmp = `${target}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
      try {
        await build(tmp);
        // World-readable whatever the umask: QEMU reads it as its own unprivileged user (jail.ts).
        await chmod(tmp, 0o644);
        await rename(tmp, target);
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
      return target;
    })().finally(() => inFlight.delete(target));
    inFlight.set(target, p);
  }
  return p;
}
