// Turns the `vfs` part of a create request into mounts a backend can realise, rejecting
// anything unsafe: relative or unnormalised guest paths, mounts over system directories,
// missing host directories.
import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { lstat, open, readlink, stat, type FileHandle } from "node:fs/promises";
import { posix, join } from "node:path";
import { promisify } from "node:util";
import type { BackendMount } from "../backends/backend.js";
import type { WireMount } from "../../protocol/rpc.js";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";
import { treeUsage } from "../image/tree-size.js";
import { mountSnapshotDisk, snapshotDiskGeometry } from "./snapshot-disk.js";

const run = promisify(execFile);

/** A bad mount request; the RPC layer reports it as invalid params. */
export class MountConfigError extends EngineError {
  readonly kind: ErrorKind = "invalid_argument";
}

const FORBIDDEN = ["/proc", "/sys", "/dev", "/.matchlock"];

export function checkGuestPath(p: string, what: string): void {
  if (!p.startsWith("/")) throw new MountConfigError(`${what} must be an absolute path: ${JSON.stringify(p)}`);
  if (posix.normalize(p) !== p || (p.length > 1 && p.endsWith("/"))) {
    throw new MountConfigError(`${what} must be a normalised path (no "..", ".", "//" or trailing "/"): ${JSON.stringify(p)}`);
  }
  if (p === "/") throw new MountConfigError(`${what} cannot be "/": the image is the root file system`);
  for (const f of FORBIDDEN) {
    if (p === f || p.startsWith(f + "/")) throw new MountConfigError(`${what} cannot be at or under ${f}: ${p}`);
  }
}

/** open(2)'s O_PATH (Node has no name for it): a handle on the object itself, no read access needed. */
const O_PATH = 0o10000000;

/** A host path checked link-free, and the object it named then. */
export interface CheckedHostPath {
  path: string;
  /**
   * "st_dev:st_ino" of that object: a backend binds `path`, then proves the bind reached this
   * very object (held open meanwhile, so the numbers cannot pass to another one).
   */
  identity: string;
  /** The object itself, whatever `path` now leads to: for the engine's own reads (copies). */
  held: string;
}

/**
 * Host paths held open from their check until the backend has mounted them. A path checked and
 * then handed on leaves a window in which a sandbox with a read-write mount above it can swap a
 * directory for a symlink. So each checked object is opened once (no link followed at the end,
 * and the kernel's name for what was opened must be the link-free path itself), and the
 * backends' binds must reach that object's identity, or the create fails.
 */
export class HeldHostPaths {
  private readonly handles: FileHandle[] = [];

  async hold(hostPath: string | undefined, guestPath: string): Promise<CheckedHostPath> {
    const path = await hostDir(hostPath, guestPath);
    let handle: FileHandle;
    try {
      handle = await open(path, O_PATH | constants.O_NOFOLLOW);
    } catch (err) {
      if (goneOrReplaced(err)) throw changedWhileChecked(guestPath, path);
      throw new MountConfigError(`mount ${guestPath}: cannot open host path ${path}: ${(err as Error).message}`);
    }
    this.handles.push(handle);
    const reached = await readlink(`/proc/self/fd/${handle.fd}`);
    // bigint: inode numbers past 2^53 (overlayfs, XFS) stay exact for the backends' comparison.
    const st = await handle.stat({ bigint: true });
    if (reached !== path || !(st.isDirectory() || st.isFile())) throw changedWhileChecked(guestPath, path);
    return { path, identity: `${st.dev}:${st.ino}`, held: `/proc/${process.pid}/fd/${handle.fd}` };
  }

  /** Once the backend has made its mounts (or failed to). */
  async release(): Promise<void> {
    await Promise.all(this.handles.splice(0).map((h) => h.close().catch(() => {})));
  }
}

/**
 * Whether a call on a path that was there, link-free, a moment ago failed because something
 * changed it since: it is gone, or a link (or a file where a directory was) took its place.
 */
function goneOrReplaced(err: unknown): boolean {
  return ["ENOENT", "ELOOP", "ENOTDIR"].includes((err as NodeJS.ErrnoException).code ?? "");
}

function changedWhileChecked(guestPath: string, path: string): MountConfigError {
  return new MountConfigError(`mount ${guestPath}: host path ${path} changed while it was checked (it went away, or a symbolic link or another object took its place); host paths must not contain symlinks`);
}

async function hostDir(hostPath: string | undefined, guestPath: string): Promise<string> {
  if (!hostPath) throw new MountConfigError(`mount ${guestPath}: host_path is required`);
  if (!hostPath.startsWith("/")) throw new MountConfigError(`mount ${guestPath}: host_path must be absolute: ${hostPath}`);
  const normal = posix.normalize(hostPath);
  const path = normal.length > 1 && normal.endsWith("/") ? normal.slice(0, -1) : normal;
  await refuseSymlinks(path, guestPath);
  const st = await stat(path).catch((err: unknown) => {
    throw goneOrReplaced(err) ? changedWhileChecked(guestPath, path) : err;
  });
  if (!st.isDirectory() && !st.isFile()) throw new MountConfigError(`mount ${guestPath}: host path is not a directory or file: ${hostPath}`);
  return path;
}

/**
 * A host path is taken only when none of its components is a symlink. A link inside a directory
 * that a sandbox can write (a read-write mount) may have been planted by that sandbox, and
 * following it would hand a later sandbox whatever host directory the link names (e.g. /etc).
 * Refusing every link, by name, is simple to reason about; the client can pass the real path.
 */
async function refuseSymlinks(path: string, guestPath: string): Promise<void> {
  let prefix = "";
  for (const part of path.split("/").filter(Boolean)) {
    prefix += `/${part}`;
    let st;
    try {
      st = await lstat(prefix);
    } catch {
      throw new MountConfigError(`mount ${guestPath}: host path does not exist: ${path} (${prefix} is missing)`);
    }
    if (st.isSymbolicLink()) {
      const target = await readlink(prefix).catch(() => "?");
      throw new MountConfigError(
        `mount ${guestPath}: host path ${path} goes through the symbolic link ${prefix} (-> ${target}); ` +
          "host paths must not contain symlinks (one a sandbox planted could redirect the mount): pass the link-free path",
      );
    }
    if (prefix !== path && !st.isDirectory()) throw new MountConfigError(`mount ${guestPath}: host path does not exist: ${path} (${prefix} is not a directory)`);
  }
}

const HOST_TYPES = ["real_fs", "host_fs"];
const TYPES = ["memory", ...HOST_TYPES, "overlay"];

/** The checks that need nothing but the request: run before anything is made for the sandbox. */
export function checkMountRequest(workspace: string, mounts: Record<string, WireMount>): void {
  checkGuestPath(workspace, "workspace");
  for (const [guestPath, m] of Object.entries(mounts)) {
    checkGuestPath(guestPath, "mount path");
    if (!TYPES.includes(m.type)) throw new MountConfigError(`mount ${guestPath}: unknown type ${JSON.stringify(m.type)} (use memory, host_fs, real_fs or overlay)`);
    checkFieldsFit(guestPath, m);
  }
}

/** Refuses fields a mount's type has no use for, rather than dropping them. */
function checkFieldsFit(guestPath: string, m: WireMount): void {
  const refuse = (why: string) => { throw new MountConfigError(`mount ${guestPath}: ${why}`); };
  if (m.host_path !== undefined && m.type === "memory") refuse("host_path does not apply to a memory mount");
  if (m.readonly && !HOST_TYPES.includes(m.type)) refuse(`readonly applies to host_fs/real_fs mounts only, not ${m.type}`);
  if ((m.upper || m.lower) && m.type !== "overlay") refuse(`upper and lower apply to overlay mounts only, not ${m.type}`);
  if (m.type !== "overlay") return;
  // The copy-on-write layer is the sandbox's own (gone at close), the lower one a host directory.
  if (m.upper && (m.upper.type !== "memory" || m.upper.host_path || m.upper.upper || m.upper.lower)) refuse('overlay upper must be {"type":"memory"}');
  const lower = m.lower;
  if (lower) {
    if (!HOST_TYPES.includes(lower.type) || !lower.host_path || lower.upper || lower.lower) {
      refuse("overlay lower must be a host_fs/real_fs mount with a host_path");
    }
    if (m.host_path && m.host_path !== lower.host_path) refuse(`overlay host_path ${m.host_path} and lower.host_path ${lower.host_path} differ`);
  }
}

/**
 * Resolves mounts. Overlay mounts get a private copy-on-write snapshot of their host directory
 * on the sandbox's snapshot disk (snapshot-disk.ts, deleted with the sandbox), so guest changes
 * never reach the host, and what the guest writes there is capped at `diskSizeMb`.
 */
export async function resolveMounts(
  workspace: string, mounts: Record<string, WireMount>, stateDir: string, diskSizeMb: number, held: HeldHostPaths,
): Promise<BackendMount[]> {
  checkMountRequest(workspace, mounts);
  const out: BackendMount[] = [];
  const overlays: Array<{ guestPath: string; source: string }> = [];
  for (const [guestPath, m] of Object.entries(mounts)) {
    switch (m.type) {
      case "memory":
        out.push({ kind: "tmpfs", guestPath });
        break;
      case "real_fs":
      case "host_fs": {
        const { path, identity } = await held.hold(m.host_path, guestPath);
        out.push({ kind: "bind", guestPath, hostPath: path, identity, readonly: m.readonly === true });
        break;
      }
      case "overlay":
        overlays.push({ guestPath, source: (await held.hold(m.host_path || m.lower?.host_path, guestPath)).held });
        break;
    }
  }
  if (overlays.length > 0) {
    const usage = await Promise.all(overlays.map((o) => treeUsage(o.source)));
    const disk = await mountSnapshotDisk(stateDir, snapshotDiskGeometry(usage, diskSizeMb));
    for (const [i, o] of overlays.entries()) {
      const snapshot = join(disk, `mount-${i + 1}`);
      // cp -a keeps modes, owners, symlinks and times; --reflink=auto makes it cheap where the fs can;
      // -H follows the held source (a /proc fd link) itself, and no link below it.
      await run("cp", ["-a", "-H", "--reflink=auto", "--", o.source, snapshot]);
      out.push({ kind: "bind", guestPath: o.guestPath, hostPath: snapshot, readonly: false });
    }
  }
  // Always serve the workspace root, even when only sub-directories of it are mounted.
  if (!out.some((m) => m.guestPath === workspace)) out.push({ kind: "tmpfs", guestPath: workspace });
  return out;
}
