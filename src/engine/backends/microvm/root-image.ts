// The image's root file system as a read-only ext4, built once per image with `mkfs.ext4 -d`
// (no mount, no root needed beyond reading the tree) and shared by every VM of that image.
// It lives next to the unpacked rootfs in the content-addressed store (<digest>/rootfs.ext4),
// so it is keyed by the image digest and goes away with the image. VMs attach it read-only.
import { execFile } from "node:child_process";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { treeSize } from "../../image/tree-size.js";
import { buildOnce } from "./artifact.js";
import { SETUP_COMMAND } from "../backend.js";

const run = promisify(execFile);
const MB = 1024 * 1024;

export function rootImagePath(rootfs: string): string {
  return join(dirname(rootfs), "rootfs.ext4");
}

export async function rootImageFor(rootfs: string): Promise<string> {
  return buildOnce(rootImagePath(rootfs), async (tmp) => {
    // Room for metadata and one inode per 4 KiB (images are mostly small files); sparse anyway.
    const sizeMb = Math.ceil((await treeSize(rootfs)) * 1.3 / MB) + 64;
    try {
      await run("mkfs.ext4", [
        "-q", "-F", "-L", "matchlock-root", "-m", "0", "-i", "4096", "-O", "^has_journal",
        "-E", "root_owner=0:0", "-d", rootfs, tmp, `${sizeMb}M`,
      ], { maxBuffer: 4 * MB });
    } catch (err) {
      const e = err as { code?: string; stderr?: string; message: string };
      if (e.code === "ENOENT") throw new Error(`mkfs.ext4 was not found: run "${SETUP_COMMAND}" (it installs e2fsprogs)`);
      throw new Error(`building the micro-VM root image from ${rootfs} failed: ${e.stderr?.trim() || e.message}`);
    }
  });
}
