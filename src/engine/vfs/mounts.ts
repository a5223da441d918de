// Turns the `vfs` part of a create request into mounts a backend can realise, rejecting
// anything unsafe: relative or unnormalised guest paths, mounts over system directories,
// missing host directories.
import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { mkdir, open, readlink, stat, type FileHandle } from "node:fs/promises";
import { posix, join } from "node:path";
import { promisify } from "node:util";
import type { BackendMount } from "../backends/backend.js";
import type { WireMount } from "../sandbox/create-config.js";

const run = promisify(execFile);

/** A bad mount request; the RPC layer reports it as invalid params. */
export class MountConfigError extends Error {}

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

/** Linux's O_PATH (the same number on x86-64 and arm64); Node's fs.constants lacks it. */
const O_PATH = 0o10000000;

/**
 * Host paths the sandbox being made will mount, each held open (O_PATH) from the moment it was
 * checked until the backend has mounted it: the backend is handed /proc/<engine>/fd/<n>, which
 * the kernel resolves to the very directory checked, so a link swapped in after the check (by a
 * sandbox writing the parent directory) changes nothing. Release once the sandbox runs or failed.
 */
export class HeldHostPaths {
  private readonly handles: FileHandle[] = [];

  /** Opens `path` one component at a time without following links; a link anywhere is refused. */
  async hold(hostPath: string | undefined, guestPath: string): Promise<{ held: string; path: string }> {
    if (!hostPath) throw new MountConfigError(`mount ${guestPath}: host_path is required`);
    if (!hostPath.startsWith("/")) throw new MountConfigError(`mount ${guestPath}: host_path must be absolute: ${hostPath}`);
    const path = posix.normalize(hostPath);
    let handle = await open("/", O_PATH | constants.O_DIRECTORY);
    try {
      let prefix = "";
      for (const part of path.split("/").filter(Boolean)) {
        prefix += `/${part}`;
        // openat(handle, part, O_NOFOLLOW), written as a path through the handle's /proc entry.
        const next = await open(`/proc/self/fd/${handle.fd}/${part}`, O_PATH | constants.O_NOFOLLOW).catch(() => undefined);
        if (!next) throw new MountConfigError(`mount ${guestPath}: host path does not exist: ${path} (${prefix} is missing)`);
        await handle.close();
        handle = next;
        const st = await handle.stat();
        if (st.isSymbolicLink()) {
          const target = await readlink(prefix).catch(() => "?");
          throw new MountConfigError(
            `mount ${guestPath}: host path ${path} goes through the symbolic link ${prefix} (-> ${target}); ` +
              "host paths must not contain symlinks (one a sandbox planted could redirect the mount): pass the link-free path",
          );
        }
        if (prefix !== path && !st.isDirectory()) throw new MountConfigError(`mount ${guestPath}: host path does not exist: ${path} (${prefix} is not a directory)`);
        if (prefix === path && !st.isDirectory() && !st.isFile()) throw new MountConfigError(`mount ${guestPath}: host path is not a directory or file: ${path}`);
      }
    } catch (err) {
      await handle.close();
      throw err;
    }
    this.handles.push(handle);
    return { held: `/proc/${process.pid}/fd/${handle.fd}`, path };
  }

  async release(): Promise<void> {
    await Promise.all(this.handles.splice(0).map((h) => h.close().catch(() => {})));
  }
}

/**
 * Resolves mounts. Overlay mounts get a private copy-on-write snapshot of their host directory
 * under `stateDir/overlay/` (deleted with the sandbox), so guest changes never reach the host.
 */
export async function resolveMounts(
  workspace: string, mounts: Record<string, WireMount>, stateDir: string, held: HeldHostPaths,
): Promise<BackendMount[]> {
  checkGuestPath(workspace, "workspace");
  const out: BackendMount[] = [];
  let overlayCount = 0;
  for (const [guestPath, m] of Object.entries(mounts)) {
    checkGuestPath(guestPath, "mount path");
    switch (m.type) {
      case "memory":
        out.push({ kind: "tmpfs", guestPath });
        break;
      case "real_fs":
      case "host_fs":
      {
        const source = await held.hold(m.host_path, guestPath);
        out.push({ kind: "bind", guestPath, hostPath: source.held, shownPath: source.path, readonly: m.readonly === true });
        break;
      }
      case "overlay": {
        const source = await held.hold(m.host_path ?? m.lower?.host_path, guestPath);
        const snapshot = join(stateDir, "overlay", `mount-${++overlayCount}`);
        await mkdir(join(stateDir, "overlay"), { recursive: true, mode: 0o700 });
        // cp -a keeps modes, owners, symlinks and times; --reflink=auto makes it cheap where the fs can.
        // From the held directory's contents ("/."): the held path itself is a /proc link, which -a would copy as one.
        const isDir = (await stat(source.held)).isDirectory();
        await run("cp", ["-a", "--reflink=auto", "--", isDir ? `${source.held}/.` : source.held, snapshot]);
        out.push({ kind: "bind", guestPath, hostPath: snapshot, readonly: false });
        break;
      }
      default:
        throw new MountConfigError(`mount ${guestPath}: unknown type ${JSON.stringify(m.type)} (use memory, host_fs, real_fs or overlay)`);
    }
  }
  // Always serve the workspace root, even when only sub-directories of it are mounted.
  if (!out.some((m) => m.guestPath === workspace)) out.push({ kind: "tmpfs", guestPath: workspace });
  return out;
}
