// The create's extra disks (spec 2.1 `extra_disks`), checked before anything is made: each an
// ext4 image file the engine can open as asked, not where a mount of the request goes.
import { constants } from "node:fs";
import { access, open, stat } from "node:fs/promises";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";
import type { BackendDisk } from "../backends/backend.js";
import type { SandboxConfig } from "../sandbox/create-config.js";
import { diskHolders, inUse } from "./disk-locks.js";

/** ext4's superblock starts at byte 1024: its magic number 56 bytes in, its incompatible features 96 bytes in. */
const SUPERBLOCK = 1024;
const EXT_MAGIC = 0xef53;
/** The journal holds writes not yet replayed (the file system was not unmounted cleanly). */
const INCOMPAT_RECOVER = 0x4;

export class ExtraDiskError extends EngineError {
  readonly kind: ErrorKind = "invalid_argument";
}

function isUnder(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir === "/" ? "/" : `${dir}/`);
}

export async function checkExtraDisks(config: SandboxConfig): Promise<void> {
  const mountPaths = [config.workspace, ...Object.keys(config.mounts)];
  for (const d of config.extraDisks) {
    const where = `extra disk ${d.hostPath} at ${d.guestMount}`;
    // A disk over a mount (or the workspace) would hide it on one engine and not the other.
    const hidden = mountPaths.find((m) => isUnder(m, d.guestMount));
    if (hidden) throw new ExtraDiskError(`invalid extra disk config: ${where}: ${hidden} is a mount of this sandbox; put the disk elsewhere (e.g. /mnt/...)`);
    const st = await stat(d.hostPath).catch((err: NodeJS.ErrnoException) => {
      throw new ExtraDiskError(`${where}: ${err.code === "ENOENT" ? "no such file" : err.message}`);
    });
    if (!st.isFile()) throw new ExtraDiskError(`${where}: not a regular file (an ext4 image file is needed, e.g. from "matchlock volume create")`);
    const mode = d.readonly ? constants.R_OK : constants.R_OK | constants.W_OK;
    await access(d.hostPath, mode).catch(() => {
      throw new ExtraDiskError(`${where}: the engine cannot ${d.readonly ? "read" : "read and write"} it (permission denied for uid ${process.getuid?.()})`);
    });
    const sb = await superblock(d.hostPath);
    if (!sb.ext) throw new ExtraDiskError(`${where}: not an ext4 file system image (make one with "matchlock volume create" or mkfs.ext4)`);
    if (d.readonly && sb.needsRecovery) {
      // A mounted ext4 always says so: a sandbox that has it read-write is the likelier reason.
      const writer = (await diskHolders(d.hostPath)).find((h) => !h.readonly);
      if (writer) throw inUse(`extra disk ${d.hostPath}`, writer);
      throw new ExtraDiskError(`${where}: its journal needs recovery (it was not unmounted cleanly: a sandbox using it was killed), which a read-only disk cannot do: attach it read-write once (or run e2fsck -p on it)`);
    }
  }
}

async function superblock(path: string): Promise<{ ext: boolean; needsRecovery: boolean }> {
  const f = await open(path, "r");
  try {
    const buf = Buffer.alloc(100);
    const { bytesRead } = await f.read(buf, 0, buf.length, SUPERBLOCK);
    const ext = bytesRead === buf.length && buf.readUInt16LE(56) === EXT_MAGIC;
    return { ext, needsRecovery: ext && (buf.readUInt32LE(96) & INCOMPAT_RECOVER) !== 0 };
  } finally {
    await f.close();
  }
}

/** The disks as a backend attaches them: parents before children. */
export function backendDisks(config: SandboxConfig): BackendDisk[] {
  return config.extraDisks
    .map((d) => ({ hostPath: d.hostPath, guestPath: d.guestMount, readonly: d.readonly }))
    .sort((a, b) => a.guestPath.split("/").length - b.guestPath.split("/").length);
}
