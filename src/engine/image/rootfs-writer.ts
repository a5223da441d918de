// Writes tar entries into an image rootfs directory without ever touching anything outside it.
// Unlike a plain tar extraction, symlink targets are stored exactly as given (absolute targets
// are normal in a rootfs: they are resolved inside the sandbox, never here), so tar's own
// protections (which rewrite such links) cannot be used; instead every parent directory of
// every entry is checked to be a real directory, not a symlink, before anything is written.
// Nothing else writes into this private staging directory, so the checks cannot race.
// The file system calls are synchronous on purpose: an image has thousands of tiny entries and a
// thread-pool round trip per call (~100 us here) costs more than the calls themselves; with them
// an import runs about as fast as GNU tar. The event loop still runs between entries and chunks.
import {
  chmodSync, chownSync, closeSync, constants, fchmodSync, fchownSync, futimesSync, lchownSync, linkSync,
  lstatSync, lutimesSync, mkdirSync, openSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeSync,
} from "node:fs";
import type { Stats } from "node:fs";
import { join } from "node:path";
import type { ReadEntry } from "tar";
import { entryParts } from "./tar-reader.js";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";

/** A tar entry that would write outside the rootfs: the import is refused. */
export class UnsafeEntryError extends EngineError {
  readonly kind: ErrorKind = "policy_refused";
}

const isRoot = process.getuid?.() === 0;

export function lstatOrUndefined(path: string): Stats | undefined {
  return lstatSync(path, { throwIfNoEntry: false });
}

/** Archive path -> parts, refusing ".." outright (a rootfs never needs it). */
export function safeParts(path: string, what = "path"): string[] {
  const parts = entryParts(path);
  if (parts.includes("..")) throw new UnsafeEntryError(`tar entry ${what} ${JSON.stringify(path)} contains "..": it could escape the image root`);
  return parts;
}

export class RootfsWriter {
  /** Relative paths verified to be real directories (only this writer changes the tree). */
  private readonly knownDirs = new Set<string>();
  /** Directory times are set last: adding entries to a directory changes its mtime. */
  private readonly dirTimes: Array<{ path: string; atime: Date; mtime: Date }> = [];

  constructor(readonly root: string) {}

  /**
   * The absolute path of `parts` if it and all its parents are real directories, undefined when
   * something on the way is missing, a symlink or not a directory (used by whiteouts: there is
   * then nothing of a lower layer to hide at that path).
   */
  existingDir(parts: string[]): string | undefined {
    for (let i = 1; i <= parts.length; i++) {
      const rel = parts.slice(0, i).join("/");
      if (this.knownDirs.has(rel)) continue;
      const st = lstatOrUndefined(join(this.root, rel));
      if (!st?.isDirectory()) return undefined;
      this.knownDirs.add(rel);
    }
    return join(this.root, ...parts);
  }

  /** Removes a path (recursively) and forgets what was cached under it. */
  remove(parts: string[]): void {
    const rel = parts.join("/");
    rmSync(join(this.root, rel), { recursive: true, force: true });
    for (const d of this.knownDirs) if (d === rel || d.startsWith(`${rel}/`)) this.knownDirs.delete(d);
  }

  async write(entry: ReadEntry): Promise<void> {
    const parts = safeParts(entry.path);
    switch (entry.type) {
      case "Directory":
      case "GNUDumpDir":
        return this.directory(parts, entry);
      case "File":
      case "OldFile":
      case "ContiguousFile":
        return this.file(parts, entry);
      case "SymbolicLink":
        return this.symlink(parts, entry);
      case "Link":
        return this.hardlink(parts, entry);
      default:
        // Device nodes and FIFOs cannot be made from node (and the sandbox gets its own /dev);
        // other types carry no file. Skip them.
        entry.resume();
    }
  }

  /** Applies the directory times recorded during extraction. */
  finish(): void {
    for (const d of this.dirTimes.reverse()) utimesSync(d.path, d.atime, d.mtime);
    this.dirTimes.length = 0;
  }

  private prepareParents(parts: string[], entryPath: string): void {
    for (let i = 1; i < parts.length; i++) {
      const rel = parts.slice(0, i).join("/");
      if (this.knownDirs.has(rel)) continue;
      const abs = join(this.root, rel);
      const st = lstatOrUndefined(abs);
      if (!st) {
        mkdirSync(abs, { mode: 0o755 }); // an implicit parent, as Docker creates it
      } else if (st.isSymbolicLink()) {
        throw new UnsafeEntryError(`tar entry ${JSON.stringify(entryPath)} would be written through the symbolic link /${rel}: refused, it could point outside the image root`);
      } else if (!st.isDirectory()) {
        throw new Error(`tar entry ${JSON.stringify(entryPath)}: /${rel} is not a directory`);
      }
      this.knownDirs.add(rel);
    }
  }

  /** Makes room for a new entry at `parts`; true when an existing directory stays (dir over dir merges). */
  private clear(parts: string[], entry: ReadEntry): boolean {
    const isDir = entry.type === "Directory" || entry.type === "GNUDumpDir";
    if (parts.length === 0) {
      if (isDir) return true;
      throw new UnsafeEntryError(`tar entry ${JSON.stringify(entry.path)} would replace the image root`);
    }
    this.prepareParents(parts, entry.path);
    const st = lstatOrUndefined(join(this.root, ...parts));
    if (!st) return false;
    if (st.isDirectory()) {
      if (isDir) return true;
      this.remove(parts);
    } else {
      unlinkSync(join(this.root, ...parts));
    }
    return false;
  }

  private mode(entry: ReadEntry, fallback: number): number {
    return typeof entry.mode === "number" ? entry.mode & 0o7777 : fallback;
  }

  private directory(parts: string[], entry: ReadEntry): void {
    const abs = join(this.root, ...parts);
    if (!this.clear(parts, entry)) mkdirSync(abs, { mode: 0o700 });
    this.knownDirs.add(parts.join("/"));
    // chown before chmod: chown clears set-id bits.
    if (isRoot) chownSync(abs, entry.uid ?? 0, entry.gid ?? 0);
    chmodSync(abs, this.mode(entry, 0o755));
    if (entry.mtime) this.dirTimes.push({ path: abs, atime: entry.atime ?? entry.mtime, mtime: entry.mtime });
    entry.resume();
  }

  private async file(parts: string[], entry: ReadEntry): Promise<void> {
    this.clear(parts, entry);
    // O_EXCL|O_NOFOLLOW: the path was just cleared; never open through a symlink.
    const fd = openSync(join(this.root, ...parts), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      for await (const chunk of entry as AsyncIterable<Buffer>) {
        for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off);
      }
      if (isRoot) fchownSync(fd, entry.uid ?? 0, entry.gid ?? 0);
      fchmodSync(fd, this.mode(entry, 0o644));
      if (entry.mtime) futimesSync(fd, entry.atime ?? entry.mtime, entry.mtime);
    } finally {
      closeSync(fd);
    }
  }

  private symlink(parts: string[], entry: ReadEntry): void {
    if (!entry.linkpath) throw new Error(`tar entry ${JSON.stringify(entry.path)}: symbolic link without a target`);
    this.clear(parts, entry);
    const abs = join(this.root, ...parts);
    // The target is stored verbatim; creating a symlink never follows it.
    symlinkSync(entry.linkpath, abs);
    if (isRoot) lchownSync(abs, entry.uid ?? 0, entry.gid ?? 0);
    if (entry.mtime) lutimesSync(abs, entry.atime ?? entry.mtime, entry.mtime);
    entry.resume();
  }

  private hardlink(parts: string[], entry: ReadEntry): void {
    // A hard link's target is another archive path, relative to the root like the entry's own.
    const targetParts = safeParts(entry.linkpath ?? "", "link target");
    const parent = this.existingDir(targetParts.slice(0, -1));
    if (targetParts.length === 0 || parent === undefined) {
      throw new UnsafeEntryError(`tar entry ${JSON.stringify(entry.path)}: hard link target ${JSON.stringify(entry.linkpath)} is not a file inside the image root`);
    }
    if (targetParts.join("/") === parts.join("/")) return void entry.resume();
    const target = join(parent, targetParts.at(-1)!);
    const st = lstatOrUndefined(target);
    if (!st || st.isDirectory()) {
      throw new Error(`tar entry ${JSON.stringify(entry.path)}: hard link target ${JSON.stringify(entry.linkpath)} ${st ? "is a directory" : "does not exist"}`);
    }
    this.clear(parts, entry);
    linkSync(target, join(this.root, ...parts)); // link(2) does not follow a symlink target
    entry.resume();
  }
}
