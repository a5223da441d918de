// The image's root file system as a read-only squashfs, built once per image with mksquashfs
// and shared by every VM of that image. It lives next to the unpacked rootfs in the
// content-addressed store (<digest>/rootfs.squashfs), so it is keyed by the image digest and goes
// away with the image. VMs attach it read-only.
//
// Why squashfs and not ext4: Debian's kernel has both as modules, and under TCG loading the ext4
// stack (ext4, jbd2, mbcache, crc16, crc32c: 2.5 MB) took ~0.45 s of every boot; squashfs.ko is
// 160 kB with no dependencies. Nothing is compressed: decompressing in an emulated CPU would cost
// more than reading the bytes.
import { execFile } from "node:child_process";
import { rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { buildOnce } from "./artifact.js";

const run = promisify(execFile);
const MB = 1024 * 1024;

export function rootImagePath(rootfs: string): string {
  return join(dirname(rootfs), "rootfs.squashfs");
}

export async function rootImageFor(rootfs: string): Promise<string> {
  return buildOnce(rootImagePath(rootfs), async (tmp) => {
    try {
      await run("mksquashfs", [
        rootfs, tmp, "-noappend", "-quiet", "-no-progress", "-no-recovery", "-no-exports",
        "-noI", "-noD", "-noF", "-noX", "-no-fragments",
        // The unpacked tree's own owners, modes and xattrs are the image's; only its top
        // directory is the store's.
        "-root-mode", "755", "-root-uid", "0", "-root-gid", "0",
      ], { maxBuffer: 4 * MB });
    } catch (err) {
      const e = err as { code?: string; stderr?: string; stdout?: string; message: string };
      if (e.code === "ENOENT") throw new Error('mksquashfs was not found: install squashfs-tools ("npm run setup")');
      throw new Error(`building the micro-VM root image from ${rootfs} failed: ${e.stderr?.trim() || e.stdout?.trim() || e.message}`);
    }
    // Engines before this one built an ext4 image there; it is dead weight now.
    await rm(join(dirname(rootfs), "rootfs.ext4"), { force: true });
  });
}
