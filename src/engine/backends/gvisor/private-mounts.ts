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
// The namespace is made by a small C helper (host/private-mounts), which then runs runsc in it.
import { join } from "node:path";
import { paths } from "../../paths.js";
import type { BackendDisk, BackendMount } from "../backend.js";

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
 * The command that runs `cmd args` in the sandbox's private mount namespace, with the image
 * `rootfs` overlaid at privateRootfs(stateDir) (the directory `stateDir/rootfs` must exist), the
 * host `binds` bound as boundOnHost named them, the extra `disks` mounted where diskMountPath
 * says, and rootWritesDir a tmpfs of `diskSizeMb`.
 */
export function inPrivateMounts(
  stateDir: string, rootfs: string, hideNetSysctl: boolean, diskSizeMb: number, binds: HostBind[], cmd: string, args: string[], disks: BackendDisk[] = [],
): [string, string[]] {
  return [paths.privateMounts(), [
    join(stateDir, "rootfs"), rootfs, hideNetSysctl ? "1" : "0", String(diskSizeMb), String(binds.length), String(disks.length),
    ...disks.flatMap((d) => [d.held ?? d.hostPath, d.readonly ? "ro" : "rw", d.hostPath]),
    ...binds.flatMap((b) => [b.readonly ? "ro" : "rw", b.path, b.identity]),
    cmd, ...args,
  ]];
}
