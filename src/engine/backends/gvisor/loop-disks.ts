// Extra disks under gVisor: each image is loop-mounted on the host, in the sandbox's private
// mount namespace (private-mounts.ts), and runsc gets the mount as a bind.
import { constants } from "node:fs";
import { access, readFile, readdir, realpath } from "node:fs/promises";
import { runCommand } from "../../host-commands.js";
import { ExtraDiskError } from "../../disks/extra-disks.js";
import { BackendUnavailableError } from "../backend.js";

/** How long a stopped sandbox's loop devices may take to be freed (autoclear, once the namespace is gone). */
const RELEASE_WAIT_MS = 10_000;

/**
 * Here the host's kernel mounts the disk, so its file system is checked first (read-only, it
 * changes nothing): a disk a micro-VM had read-write was written block by block by that guest,
 * and a malformed file system must not reach the host kernel's ext4 driver.
 */
export async function checkDiskForHostKernel(image: string, held = image): Promise<void> {
  const r = await runCommand("e2fsck", ["-f", "-n", held], { timeoutMs: 120_000 });
  if (r.spawnError) throw new BackendUnavailableError(`checking the extra disk ${image}: e2fsck could not run (${r.spawnError.message}): install e2fsprogs ("npx matchlock setup" does)`);
  if (r.status === 0) return;
  const detail = (r.stdout + r.stderr).split("\n").map((l) => l.trim()).filter((l) => l && !/^Pass \d|^e2fsck \d/.test(l)).slice(0, 4).join("; ");
  throw new ExtraDiskError(
    `the extra disk ${image} is not a clean ext4 file system, and the gVisor backend mounts it with the host's kernel: ` +
      `repair it with "e2fsck -fy ${image}" while no sandbox has it (e2fsck -fn said: ${detail})`,
  );
}

/** gVisor sandboxes get their extra disks through loop devices on the host. */
export async function checkLoopDevices(): Promise<void> {
  if (await access("/dev/loop-control", constants.W_OK).then(() => false, () => true)) {
    throw new BackendUnavailableError(
      "extra disks on the gVisor backend are loop-mounted on the host, and /dev/loop-control is missing or not writable: the engine needs root and the loop kernel module (modprobe loop)",
    );
  }
}

/** The loop devices backed by these files (by the kernel's record of each device's backing file). */
async function loopDevicesOf(images: string[]): Promise<string[]> {
  const wanted = new Set(await Promise.all(images.map((i) => realpath(i).catch(() => i))));
  const found: string[] = [];
  for (const dev of await readdir("/sys/block").catch(() => [] as string[])) {
    if (!dev.startsWith("loop")) continue;
    const backing = (await readFile(`/sys/block/${dev}/loop/backing_file`, "utf8").catch(() => "")).trim();
    if (wanted.has(backing)) found.push(dev);
  }
  return found;
}

/** Waits (bounded) until no loop device is backed by the images; says which are left otherwise. */
export async function loopDisksReleased(images: string[]): Promise<void> {
  const deadline = Date.now() + RELEASE_WAIT_MS;
  let left = await loopDevicesOf(images);
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    left = await loopDevicesOf(images);
  }
  if (left.length > 0) throw new Error(`the extra disks' loop devices (${left.join(", ")}) were not freed within ${RELEASE_WAIT_MS / 1000} s of the sandbox stopping`);
}
