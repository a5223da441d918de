// The mount namespace `runsc run` starts in: private to one sandbox, and gone (with every mount
// made in it) when the sandbox's last process exits, so nothing here needs unmounting.
//
// runsc's gofer creates the bind mounts' mount points (files and directories) inside the root
// file system it is given, on the host. Given the image's unpacked rootfs from the store, it
// would write into the store, and every later sandbox of that image would see the mount points
// of earlier ones. So runsc gets a per-sandbox overlay instead: the image read-only below, an
// upper layer on a small tmpfs that takes the mount points and vanishes with the namespace.
//
// Read-only host mounts are made read-only here, by the host kernel, not only by gVisor: with
// directfs (the default of current runsc) the Sentry opens host files itself, and an O_TRUNC
// open of a file in a read-only mount emptied the host file although the guest got EROFS. Each
// is handed to runsc as a read-only bind (submounts included) made in this namespace, so no
// open can change the host file, whatever the runsc version or its flags. A user's read-write
// host path is bound here too: there the bind is proved to reach the object the engine checked.
import { join } from "node:path";
import { SAME_OBJECT_SH, type BackendDisk, type BackendMount } from "../backend.js";

/** The rootfs path runsc is given: only exists inside the sandbox's mount namespace. */
export function privateRootfs(stateDir: string): string {
  return join(stateDir, "rootfs", "merged");
}

/**
 * Where runsc keeps the root overlay's writes (its filestore, --overlay2=root:dir=...): a tmpfs
 * of the sandbox's disk size in the namespace, so a guest writing past disk_size_mb meets a full
 * disk (ENOSPC). Being memory, the writes count against memory_mb as well, as runsc's own
 * memory medium's would; the tmpfs goes with the namespace.
 */
export function rootWritesDir(stateDir: string): string {
  return join(stateDir, "rootfs", "writes");
}

type HostBind = { readonly: boolean; path: string; identity: string };

/** Where the `index`th host bind appears (in the namespace only). */
function hostBindPath(stateDir: string, b: { readonly: boolean }, index: number): string {
  return join(stateDir, "rootfs", b.readonly ? "ro" : "rw", String(index));
}

/** Where the `index`th extra disk is loop-mounted (in the namespace only). */
export function diskMountPath(stateDir: string, index: number): string {
  return join(stateDir, "rootfs", "disk", String(index));
}

/**
 * The mounts as runsc is to see them: each read-only bind, and each user's host path, replaced by
 * its bind in the namespace; `binds` are the originals, in that order, for inPrivateMounts.
 */
export function boundOnHost(stateDir: string, mounts: BackendMount[]): { mounts: BackendMount[]; binds: HostBind[] } {
  const binds: HostBind[] = [];
  const replaced = mounts.map((m) => {
    if (m.kind !== "bind" || (!m.readonly && !m.identity)) return m;
    const b = { readonly: m.readonly, path: m.hostPath, identity: m.identity ?? "-" };
    binds.push(b);
    return { ...m, hostPath: hostBindPath(stateDir, b, binds.length - 1) };
  });
  return { mounts: replaced, binds };
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
  SAME_OBJECT_SH,
  'cannot_mount() { echo "matchlock: cannot mount the extra disk $1 (an ext4 image, on a loop device: needs root and /dev/loop-control)" >&2; exit 1; }',
  'root=$1 image=$2 hide_net=$3 disk_mb=$4 binds=$5 disks=$6; shift 6',
  `mount -t tmpfs -o ${UPPER_TMPFS} matchlock-rootfs "$root"`,
  'cd "$root"',
  "mkdir lower upper work merged ro rw disk writes",
  'mount -t tmpfs -o "size=${disk_mb}m,mode=700" matchlock-root-writes writes',
  // Extra disks: disk/0, disk/1, ... (diskMountPath), each image on a loop device of its own
  // (autoclear: it is freed when the namespace, and with it the mount, goes).
  'i=0',
  'while [ "$i" -lt "$disks" ]; do',
  '  mkdir "disk/$i"',
  '  if [ "$2" = ro ]; then ro=-r opts=ro,nosuid,nodev,noinit_itable; else ro= opts=nosuid,nodev,noinit_itable; fi',
  // The held image ($1, /proc/<engine>/fd/N) on a loop device of its own: losetup opens it as it
  // is (never re-resolved by name), and `mount -o loop` could reuse another file's loop device.
  // Detached at once: it goes when its mount does.
  '  dev=$(losetup $ro --find --show -- "$1") || cannot_mount "$3"',
  '  mount -t ext4 -o "$opts" -- "$dev" "disk/$i" || { losetup -d "$dev"; cannot_mount "$3"; }',
  '  losetup -d "$dev"',
  '  i=$((i + 1)); shift 3',
  'done',
  // Host paths: ro/0, rw/1, ... (hostBindPath), recursive binds of the path as given (-c: not
  // re-resolved by mount(8)), each proved to be the object the engine checked; then every
  // mount under ro/ remounted read-only: a plain `mount --rbind -o ro` leaves submounts writable.
  // mountinfo escapes blanks in paths as octal (\040); printf %b turns them back.
  'i=0',
  'while [ "$i" -lt "$binds" ]; do',
  '  dir=$1 src=$2 id=$3; shift 3',
  '  if [ -d "$src" ]; then mkdir "$dir/$i"; else : > "$dir/$i"; fi',
  '  mount -c --rbind "$src" "$dir/$i" || changed_while_mounted "$src" "$id"',
  '  same_object "$dir/$i" "$id" "$src"',
  '  i=$((i + 1))',
  'done',
  "awk '{ print $5 }' /proc/self/mountinfo | while read -r m; do",
  '  m=$(printf "%b" "$m")',
  '  case "$m" in "$root/ro/"*) mount -o remount,bind,ro "$m";; esac',
  'done',
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
 * `rootfs` overlaid at privateRootfs(stateDir) (the directory `stateDir/rootfs` must exist), the
 * host `binds` bound as boundOnHost named them, the extra `disks` mounted where diskMountPath
 * says, and rootWritesDir a tmpfs of `diskSizeMb`.
 */
export function inPrivateMounts(
  stateDir: string, rootfs: string, hideNetSysctl: boolean, diskSizeMb: number, binds: HostBind[], cmd: string, args: string[], disks: BackendDisk[] = [],
): [string, string[]] {
  const script = [
    "sh", "-c", SCRIPT, "sh", join(stateDir, "rootfs"), rootfs, hideNetSysctl ? "1" : "0", String(diskSizeMb), String(binds.length), String(disks.length),
    ...disks.flatMap((d) => [d.held ?? d.hostPath, d.readonly ? "ro" : "rw", d.hostPath]),
    ...binds.flatMap((b) => [b.readonly ? "ro" : "rw", b.path, b.identity]),
  ];
  return ["unshare", ["-m", "--propagation", "private", ...script, cmd, ...args]];
}
