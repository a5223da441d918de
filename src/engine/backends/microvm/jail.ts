// QEMU's confinement, in the manner of Firecracker's jailer: each QEMU runs in its own mount, pid,
// ipc and uts namespaces (and network namespace when the VM has no NIC), chrooted into a tmpfs
// that holds only what it needs (the host's /usr and the dynamic loader's cache read-only, a few
// device nodes, the VM's kernel, initramfs and root image read-only, the VM's 9p shares), as an
// unprivileged user, with no capabilities (a VM with 9p shares keeps only the two it needs to serve
// them, see shareCapabilities), no_new_privs, and QEMU's own seccomp filter (-sandbox).
//
// Built from util-linux and coreutils tools: `unshare` makes the namespaces, a fixed shell script
// (run as root inside them) mounts the view, `chroot` enters it and `setpriv` drops the user,
// groups and capabilities right before QEMU starts. The mounts live only in the private mount
// namespace: nothing of them is visible on the host, and they vanish with QEMU.
import { readdir, readlink } from "node:fs/promises";
import { posix } from "node:path";
import { settings } from "../../../settings/settings.js";
import { SAME_OBJECT_SH } from "../backend.js";

/** Where things appear inside the jail. */
export const JAIL_PATHS = {
  vmlinux: "/vm/vmlinux",
  initramfs: "/vm/initramfs",
  rootImage: "/vm/root.img",
  share: (i: number) => `/shares/${i}`,
  /** The one file of a single-file share, inside its share directory (guest/microvm/init.c binds it into place). */
  sharedFile: "file",
  /** A QEMU binary from outside /usr (MATCHLOCK_QEMU); one in /usr is seen through the /usr mount. */
  qemu: "/qemu",
} as const;

/**
 * QEMU's own seccomp filter: no obsolete system calls, no setuid/setgid/capability changes, no
 * fork/exec, no scheduler or resource-limit changes. The jail dropped privileges before QEMU
 * started, so QEMU never needs the calls `elevateprivileges=deny` forbids (it would with -runas).
 */
export const QEMU_SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/**
 * 9p's "local" backend opens the shared files with QEMU's own credentials. To serve the guest's
 * root (which may read or change any file in a share, whoever owns it on the host, and records
 * owners and modes in mapped-xattr's extended attributes) QEMU needs to pass file permission
 * checks (dac_override) and owner checks for xattrs and times (fowner); nothing else. Its view
 * holds only the shares and read-only files, so these reach no more than the guest already can.
 */
export const SHARE_CAPABILITIES = ["dac_override", "fowner"] as const;

export interface JailPlan {
  /** An empty host directory the jail's tmpfs root is mounted on (in the private namespace only). */
  dir: string;
  /** Absolute path of the QEMU binary. */
  qemu: string;
  uid: number;
  gid: number;
  /** Supplementary groups (e.g. /dev/kvm's group); none otherwise. */
  groups: number[];
  /** Read-only files, host path -> jail path. */
  files: Array<{ host: string; jail: string }>;
  /**
   * 9p shares, host path -> jail directory QEMU serves. A host file is shared as the one file
   * (JAIL_PATHS.sharedFile) of a directory of the jail's read-only tmpfs: nothing beside it is
   * shared, and nothing can be made beside it.
   */
  shares: Array<{ host: string; jail: string; readonly: boolean; file: boolean; identity?: string | undefined }>;
  /** Host device nodes, bound at the same path (read-only mount: usable, not changeable). */
  devices: string[];
  /**
   * Character devices made in the jail for QEMU's user alone (mode 0600), by number: the host's
   * node may be root's only (e.g. /dev/net/tun 0600), and changing the host's is not ours to do.
   */
  ownDevices: Array<{ path: string; major: number; minor: number }>;
  /** The top-level links of a merged /usr (/bin -> usr/bin ...), recreated in the jail. */
  rootLinks: Array<{ name: string; target: string }>;
  /** Capabilities QEMU keeps (ambient); [] for none at all. */
  capabilities: readonly string[];
  /** The VM's own netns (a VM with a NIC: its tap is there); absent: a fresh, empty one. */
  netns: string | undefined;
}

/**
 * Runs as root inside the new namespaces. Arguments: the jail directory; the directories to make
 * in it, up to "--"; the links to make at its top (merged-/usr targets, named after their last
 * component), up to "--"; entries of four words (kind, source, jail path, the identity the bound
 * object must have or "-") up to "--"; then the
 * command to run chrooted. Every path is its own argument, so no byte of a path is ever parsed
 * by the shell. The tmpfs allows device nodes (those made here; QEMU, without CAP_MKNOD, can make
 * none, and the tmpfs is read-only before QEMU starts). Each external command costs a process
 * start, a real share of the boot time on a loaded machine: directories and links are made by
 * one command each.
 */
const JAIL_SCRIPT = `set -eu
${SAME_OBJECT_SH}
jail=$1; shift
mount -t tmpfs -o mode=0755,size=1m,nosuid matchlock-jail "$jail"
cd "$jail"
dirs=; while [ "$1" != -- ]; do dirs="$dirs $1"; shift; done; shift
[ -z "$dirs" ] || mkdir -p $dirs
links=; while [ "$1" != -- ]; do links="$links $1"; shift; done; shift
[ -z "$links" ] || ln -s $links .
while [ "$1" != -- ]; do
  kind=$1 src=$2 dst=$jail$3 id=$4; shift 4
  case $kind in
    proc) mount -t proc -o nosuid,nodev,noexec,subset=pid proc "$dst"; continue ;;
    chardev) maj=\${src%%:*} rest=\${src#*:}; mknod -m 0600 "$dst" c "$maj" "\${rest%%:*}"; chown "\${rest#*:}" "$dst"; continue ;;
    file|rwfile|dev) : > "$dst" ;;
  esac
  # -c: the source as given, not canonicalised by mount(8) first; same_object then proves a
  # share's bind reached the object the engine checked.
  case $kind in
    dev) mount -c --bind -o ro,nosuid "$src" "$dst" ;;
    rw|rwfile) mount -c --bind -o nosuid,nodev "$src" "$dst" || changed_while_mounted "$src" "$id" ;;
    *) mount -c --bind -o ro,nosuid,nodev "$src" "$dst" || changed_while_mounted "$src" "$id" ;;
  esac
  same_object "$dst" "$id" "$src"
done
shift
mount -o remount,ro,nosuid "$jail"
exec chroot "$jail" "$@"`;

/** The command that runs `qemuArgs` confined by `plan`; QEMU dies with the engine (pdeathsig at both ends). */
export function jailedCommand(plan: JailPlan, qemuArgs: string[]): [string, string[]] {
  const inUsr = plan.qemu.startsWith("/usr/");
  const entries: Array<[kind: string, source: string, jailPath: string, identity?: string]> = [
    ["dir", "/usr", "/usr"],
    ["file", "/etc/ld.so.cache", "/etc/ld.so.cache"],
    ...plan.devices.map((d): [string, string, string] => ["dev", d, d]),
    ...plan.ownDevices.map((d): [string, string, string] => ["chardev", `${d.major}:${d.minor}:${plan.uid}:${plan.gid}`, d.path]),
    ...plan.files.map((f): [string, string, string] => ["file", f.host, f.jail]),
    ...(inUsr ? [] : [["file", plan.qemu, JAIL_PATHS.qemu] as [string, string, string]]),
    ...plan.shares.map((s): [string, string, string, string | undefined] =>
      s.file ? [s.readonly ? "file" : "rwfile", s.host, posix.join(s.jail, JAIL_PATHS.sharedFile), s.identity] : [s.readonly ? "dir" : "rw", s.host, s.jail, s.identity]),
    // 9p's local backend works on files through /proc/self/fd; this /proc shows only the jail's pid namespace.
    ...(plan.shares.length > 0 ? [["proc", "proc", "/proc"] as [string, string, string]] : []),
  ];
  // Relative to the jail: every mount point's directory (and a directory mount point itself).
  // All are fixed names (JAIL_PATHS, /dev, /etc), so the script may split them on spaces.
  const dirs = new Set<string>();
  for (const [kind, , jailPath] of entries) {
    const dir = kind === "dir" || kind === "rw" || kind === "proc" ? jailPath : posix.dirname(jailPath);
    if (dir !== "/") dirs.add(dir.slice(1));
  }

  const caps = plan.capabilities.map((c) => `+${c}`).join(",");
  const drop = [
    "setpriv", "--reuid", String(plan.uid), "--regid", String(plan.gid),
    ...(plan.groups.length ? ["--groups", plan.groups.join(",")] : ["--clear-groups"]),
    "--inh-caps", caps ? `-all,${caps}` : "-all",
    ...(caps ? ["--ambient-caps", caps] : []),
    "--bounding-set", caps ? `-all,${caps}` : "-all",
    "--no-new-privs",
    // Set after the user change (which clears it): QEMU dies with the unshare that waits for it.
    "--pdeathsig", "KILL",
    "--", inUsr ? plan.qemu : JAIL_PATHS.qemu, ...qemuArgs,
  ];
  const namespaces = ["--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--ipc", "--uts", ...(plan.netns ? [] : ["--net"])];
  const enterNetns = plan.netns ? ["nsenter", `--net=${plan.netns}`, "--"] : [];
  const script = [plan.dir, ...dirs, "--", ...plan.rootLinks.map((l) => l.target), "--", ...entries.flatMap(([kind, source, jailPath, identity]) => [kind, source, jailPath, identity ?? "-"]), "--", ...drop];
  // The outer setpriv: the kernel kills unshare (and so QEMU) the moment the engine dies.
  return ["setpriv", ["--pdeathsig", "KILL", "--", ...enterNetns, "unshare", ...namespaces, "--", "sh", "-c", JAIL_SCRIPT, "matchlock-jail", ...script]];
}

let rootLinksMemo: Promise<Array<{ name: string; target: string }>> | undefined;

/**
 * The host's top-level symlinks into /usr named after their target (Debian's merged /usr: /bin ->
 * usr/bin, /lib, /lib64, /sbin), which the dynamic loader and its cache's paths go through.
 */
export function usrRootLinks(): Promise<Array<{ name: string; target: string }>> {
  rootLinksMemo ??= (async () => {
    const links = [];
    for (const name of await readdir("/")) {
      const target = await readlink(`/${name}`).catch(() => undefined);
      if (target && /^usr\/[\w.-]+$/.test(target) && posix.basename(target) === name) links.push({ name, target });
    }
    return links;
  })();
  return rootLinksMemo;
}

/** MATCHLOCK_QEMU_USER ("uid:gid"), else nobody:nogroup (65534:65534). */
export function qemuUser(env = settings.qemuUser.read()): { uid: number; gid: number } {
  if (!env) return { uid: 65534, gid: 65534 };
  const m = /^(\d+):(\d+)$/.exec(env);
  if (!m || Number(m[1]) === 0 || Number(m[1]) > 0xfffffffe || Number(m[2]) > 0xfffffffe) {
    throw new Error(`MATCHLOCK_QEMU_USER must be "uid:gid" with numbers and a uid other than 0 (got ${JSON.stringify(env)})`);
  }
  return { uid: Number(m[1]), gid: Number(m[2]) };
}
