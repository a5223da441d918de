// The overlay mounts' private snapshots live on a file system of their own, one per sandbox: a
// sparse ext4 image sized to the snapshots plus the sandbox's disk size, loop-mounted at
// <vm dir>/overlay. A guest writing into its overlay mounts then meets a full disk (ENOSPC)
// at its disk size, instead of filling the host's disk where the state directory lives. Both
// engines share the snapshots from there (gVisor's gofer, QEMU's 9p). nosuid and nodev: a
// set-id file or device node in a snapshot gives nobody on the host anything.
import { lstat, mkdir, rm, truncate, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { runCommand } from "../host-commands.js";
import type { TreeUsage } from "../image/tree-size.js";

const MiB = 1024 * 1024;
/** ext4's own structures (bitmaps, inode tables, directories) on top of the content. */
const METADATA_BYTES = 4 * MiB;
/** Room for one inode per this many bytes the guest may write (ext4's default ratio). */
const BYTES_PER_NEW_INODE = 16 * 1024;
/** A snapshot's file takes at least one block: counted per entry on top of its bytes. */
const BLOCK = 4096;

export function snapshotDiskDir(vmDir: string): string {
  return join(vmDir, "overlay");
}

function imagePath(vmDir: string): string {
  return join(vmDir, "overlay.ext4");
}

/** The disk's size and inode count for snapshots of `sources` and `diskSizeMb` of writes. */
export function snapshotDiskGeometry(sources: TreeUsage[], diskSizeMb: number): { bytes: number; inodes: number } {
  const content = sources.reduce((n, s) => n + s.bytes + s.entries * BLOCK, 0);
  const entries = sources.reduce((n, s) => n + s.entries, 0);
  const bytes = Math.ceil((content + diskSizeMb * MiB + METADATA_BYTES) / MiB) * MiB;
  return { bytes, inodes: entries + Math.ceil((diskSizeMb * MiB) / BYTES_PER_NEW_INODE) + 64 };
}

async function must(what: string, cmd: string, args: string[], hint: string): Promise<void> {
  const r = await runCommand(cmd, args);
  if (r.spawnError) throw new Error(`${what}: ${cmd} could not run (${r.spawnError.message}): ${hint}`);
  if (r.status !== 0) throw new Error(`${what}: ${cmd} failed (status ${r.status}): ${r.stderr.trim()}`);
}

/** Makes and mounts the sandbox's snapshot disk; returns the directory to copy snapshots into. */
export async function mountSnapshotDisk(vmDir: string, geometry: { bytes: number; inodes: number }): Promise<string> {
  const image = imagePath(vmDir);
  const dir = snapshotDiskDir(vmDir);
  await mkdir(dir, { mode: 0o700 });
  await rm(image, { force: true });
  await writeFile(image, "", { mode: 0o600 });
  await truncate(image, geometry.bytes); // sparse: only what is written takes host disk
  await must("making the overlay mounts' disk", "mkfs.ext4", [
    "-q", "-F", "-m", "0", "-O", "^has_journal,^resize_inode", "-N", String(geometry.inodes),
    // No background zeroing of inode tables (noinit_itable below): it would fill the sparse file.
    "-E", "lazy_itable_init=1,nodiscard,root_owner=0:0", image,
  ], 'install e2fsprogs ("npm run setup")');
  const hint = "the engine needs root and a loop device (/dev/loop-control) for overlay mounts";
  // A loop device of its own, never `mount -o loop`: that reuses any loop device whose backing
  // file has this file's device and inode numbers, and a deleted image of an earlier sandbox
  // (still held by that sandbox's last process) may have had them.
  const attached = await runCommand("losetup", ["--find", "--show", "--", image]);
  if (attached.spawnError || attached.status !== 0) {
    throw new Error(`attaching the overlay mounts' disk: losetup failed (${attached.spawnError?.message ?? attached.stderr.trim()}): ${hint}`);
  }
  const device = attached.stdout.trim();
  try {
    // -w: never mount(8)'s quiet fall-back to read-only.
    await must("mounting the overlay mounts' disk", "mount", ["-w", "-o", "nosuid,nodev,noinit_itable", device, dir], hint);
  } finally {
    // Detached now if the mount failed; else once the file system is unmounted (autoclear).
    await runCommand("losetup", ["-d", device]);
  }
  return dir;
}

async function isMountPoint(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).dev !== (await lstat(dirname(path))).dev;
  } catch {
    return false;
  }
}

/**
 * Unmounts and deletes a sandbox's snapshot disk; true if there was one. The unmount is lazy: an
 * engine process still holding a file there (a QEMU being killed) keeps the file system until it
 * lets go, and the host's view is clean at once.
 */
export async function removeSnapshotDisk(vmDir: string): Promise<boolean> {
  const dir = snapshotDiskDir(vmDir);
  const image = imagePath(vmDir);
  const found = (await lstat(dir).then(() => true, () => false)) || (await lstat(image).then(() => true, () => false));
  if (await isMountPoint(dir)) {
    await must("unmounting the overlay mounts' disk", "umount", ["--lazy", dir], "util-linux's umount is needed");
  }
  await rm(dir, { recursive: true, force: true });
  await rm(image, { force: true });
  return found;
}
