// The mount namespace `runsc run` starts in: private to one sandbox, and gone (with every mount
// made in it) when the sandbox's last process exits, so nothing here needs unmounting.
//
// runsc's gofer creates the bind mounts' mount points (files and directories) inside the root
// file system it is given, on the host. Given the image's unpacked rootfs from the store, it
// would write into the store, and every later sandbox of that image would see the mount points
// of earlier ones. So runsc gets a per-sandbox overlay instead: the image read-only below, an
// upper layer on a small tmpfs that takes the mount points and vanishes with the namespace.
import { join } from "node:path";

/** The rootfs path runsc is given: only exists inside the sandbox's mount namespace. */
export function privateRootfs(stateDir: string): string {
  return join(stateDir, "rootfs", "merged");
}

/**
 * Mount points are empty files and directories, and runsc writes nothing else there (the
 * guest's own changes stay in the sentry's memory overlay): a small cap is plenty.
 */
const UPPER_TMPFS = "size=16m,nr_inodes=16384,mode=700";

/**
 * Paths reach the mount commands as arguments, never spliced into the script or into mount
 * options: the overlay's layers are named relative to the tmpfs, so a comma or colon in the
 * image store's path cannot change their meaning.
 */
const SCRIPT = [
  "set -e",
  'root=$1 image=$2 hide_net=$3; shift 3',
  `mount -t tmpfs -o ${UPPER_TMPFS} matchlock-rootfs "$root"`,
  'cd "$root"',
  "mkdir lower upper work merged",
  // The image read-only even below the overlay: nothing in this namespace can write to it.
  'mount --bind "$image" lower',
  "mount -o remount,bind,ro lower",
  "mount -t overlay matchlock-rootfs -o lowerdir=lower,upperdir=upper,workdir=work merged",
  // runsc refuses --network=sandbox when it thinks it is in the root netns, and on kernels from
  // about 6.7 every netns looks like the root one to it (gVisor #10704): hiding /proc/sys/net
  // here avoids the false positive.
  'if [ "$hide_net" = 1 ]; then mount -t tmpfs -o size=4k matchlock /proc/sys/net; fi',
  'cd /',
  'exec "$@"',
].join("\n");

/**
 * The command that runs `cmd args` in the sandbox's private mount namespace, with the image
 * `rootfs` overlaid at privateRootfs(stateDir) (the directory `stateDir/rootfs` must exist).
 */
export function inPrivateMounts(
  stateDir: string, rootfs: string, hideNetSysctl: boolean, cmd: string, args: string[],
): [string, string[]] {
  return ["unshare", ["-m", "--propagation", "private", "sh", "-c", SCRIPT, "sh", join(stateDir, "rootfs"), rootfs, hideNetSysctl ? "1" : "0", cmd, ...args]];
}
