// Keeps <cache>/microvm from filling with initramfs files: each distinct input digest (a new
// agent, init or kernel) makes a new ~6.5 MB cpio, and nothing else ever removes the old ones.
// A file's mtime is when an engine last chose it for a VM (markUsed), so after a new one is
// built the others are removed unless recently used or among the most recently used few.
// The grace period is what makes this safe against other engines sharing the cache: one may
// have chosen a file and not yet started QEMU (the root image may still be building; QEMU reads
// -initrd once at start, so removing the file after that is harmless to a running VM).
import { readdir, rm, stat, utimes } from "node:fs/promises";
import { join } from "node:path";

/** A file used more recently than this is never removed. */
export const UNUSED_GRACE_MS = 30 * 60_000;
/** The most recently used files kept whatever their age (besides the one just built). */
export const KEEP_RECENT = 2;

const INITRAMFS_NAME = /^initramfs-[0-9a-f]+\.cpio$/;

/** Records that `file` was chosen for a VM now (its mtime); a failure only means it may be pruned sooner. */
export async function markUsed(file: string): Promise<void> {
  const now = new Date();
  await utimes(file, now, now).catch(() => undefined);
}

/**
 * Removes the initramfs files in `dir` other than `current` that are neither used within
 * graceMs nor among the keepRecent most recently used. Returns the names removed.
 */
export async function pruneInitramfs(
  dir: string, current: string, opts: { now?: number; graceMs?: number; keepRecent?: number } = {},
): Promise<string[]> {
  const { now = Date.now(), graceMs = UNUSED_GRACE_MS, keepRecent = KEEP_RECENT } = opts;
  const others: Array<{ name: string; used: number }> = [];
  for (const name of await readdir(dir)) {
    if (!INITRAMFS_NAME.test(name) || join(dir, name) === current) continue;
    const st = await stat(join(dir, name)).catch(() => undefined); // another engine may prune too
    if (st?.isFile()) others.push({ name, used: st.mtimeMs });
  }
  others.sort((a, b) => b.used - a.used);
  const removed: string[] = [];
  for (const { name, used } of others.slice(keepRecent)) {
    if (now - used < graceMs) continue;
    await rm(join(dir, name), { force: true });
    removed.push(name);
  }
  return removed;
}
