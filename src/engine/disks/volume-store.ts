// Named volumes: ext4 image files under $MATCHLOCK_HOME/volumes, <name>.ext4, made by mkfs.ext4
// (journalled, so a sandbox killed mid-write leaves a file system the next mount recovers).
// They outlive every sandbox; `run --disk @name:/mnt` attaches one (extra_disks).
import { link, mkdir, readdir, rm, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";
import { runCommand } from "../host-commands.js";
import { paths } from "../paths.js";
import { diskHolders, DiskInUseError } from "./disk-locks.js";

const MiB = 1024 * 1024;
export const DEFAULT_VOLUME_MB = 10240;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export interface VolumeInfo {
  name: string;
  /** Human-readable, as upstream prints it: "16.0 MB". */
  size: string;
  path: string;
}

export class VolumeNotFoundError extends EngineError {
  readonly kind: ErrorKind = "not_found";
}

export class VolumeError extends EngineError {
  readonly kind: ErrorKind = "invalid_argument";
}

export function volumePath(name: string): string {
  checkName(name);
  return join(paths.volumes(), `${name}.ext4`);
}

function checkName(name: string): void {
  if (!NAME.test(name)) {
    throw new VolumeError(`invalid volume name ${JSON.stringify(name)}: use letters, digits, '_', '.' and '-' (starting with a letter or digit, at most 128)`);
  }
}

function sizeText(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MB`;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

/** The volume's image path; a VolumeNotFoundError (with upstream's words) when there is none. */
export async function existingVolume(name: string): Promise<string> {
  const path = volumePath(name);
  if (!(await exists(path))) throw new VolumeNotFoundError(`named volume not found: ${name}`);
  return path;
}

/** A temporary name beside the final one: an interrupted create or copy never leaves a half volume under its name. */
function partialPath(path: string): string {
  return `${path}.partial-${process.pid}`;
}

/** Gives the finished image its name; never over a volume made meanwhile under the same name. */
async function publish(partial: string, path: string, name: string): Promise<void> {
  try {
    await link(partial, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") throw new VolumeError(`volume ${name} already exists`);
    throw err;
  }
}

export async function createVolume(name: string, sizeMb: number): Promise<VolumeInfo> {
  const path = volumePath(name);
  if (!Number.isInteger(sizeMb) || sizeMb <= 0) throw new VolumeError(`invalid volume size ${sizeMb}: must be a whole number of MB greater than 0`);
  if (await exists(path)) throw new VolumeError(`volume ${name} already exists`);
  await mkdir(paths.volumes(), { recursive: true, mode: 0o700 });
  const partial = partialPath(path);
  try {
    await writeFile(partial, "", { mode: 0o600 });
    await truncate(partial, sizeMb * MiB); // sparse: only what is written takes host disk
    // root_owner=0:0: the file system's root belongs to the guest's root, whoever made it here.
    // The lazy inits skip zeroing what a fresh sparse file reads as zeros anyway (the journal,
    // the inode tables; the disks are mounted noinit_itable): the file takes only what is written.
    const r = await runCommand("mkfs.ext4", ["-q", "-F", "-L", name.slice(0, 16), "-E", "root_owner=0:0,nodiscard,lazy_itable_init=1,lazy_journal_init=1", partial]);
    if (r.spawnError) throw new VolumeError(`cannot make volume ${name}: mkfs.ext4 could not run (${r.spawnError.message}): install e2fsprogs ("npx matchlock setup" does)`);
    if (r.status !== 0) throw new VolumeError(`cannot make volume ${name}: mkfs.ext4 failed (status ${r.status}): ${r.stderr.trim()}`);
    await publish(partial, path, name);
  } finally {
    await rm(partial, { force: true });
  }
  return { name, size: sizeText(sizeMb * MiB), path };
}

export async function listVolumes(): Promise<VolumeInfo[]> {
  const names = await readdir(paths.volumes()).catch(() => [] as string[]);
  const volumes: VolumeInfo[] = [];
  for (const file of names.sort()) {
    const name = file.endsWith(".ext4") ? file.slice(0, -".ext4".length) : "";
    if (!NAME.test(name)) continue;
    const path = join(paths.volumes(), file);
    const st = await stat(path).catch(() => undefined);
    if (st?.isFile()) volumes.push({ name, size: sizeText(st.size), path });
  }
  return volumes;
}

/** Refused while a running sandbox has the volume attached: its data would go with it. */
export async function removeVolume(name: string): Promise<void> {
  const path = await existingVolume(name);
  const holder = (await diskHolders(path))[0];
  if (holder) throw new DiskInUseError(`volume ${name} is in use by sandbox ${holder.vmId}: stop it first`);
  await rm(path);
}

/**
 * A copy of the whole image: the file system inside (owners, modes, links) stays exactly as it
 * is. Refused while the source is attached read-write (the copy could catch it mid-write).
 */
export async function copyVolume(source: string, dest: string): Promise<void> {
  const from = await existingVolume(source);
  const to = volumePath(dest);
  if (await exists(to)) throw new VolumeError(`volume ${dest} already exists`);
  const writer = (await diskHolders(from)).find((h) => !h.readonly);
  if (writer) throw new DiskInUseError(`volume ${source} is in use by sandbox ${writer.vmId} (read-write): stop it before copying`);
  const partial = partialPath(to);
  try {
    const r = await runCommand("cp", ["--sparse=always", "--", from, partial]); // keeps the image sparse
    if (r.status !== 0) throw new VolumeError(`cannot copy volume ${source}: cp failed (status ${r.status}): ${r.stderr.trim()}`);
    await publish(partial, to, dest);
  } finally {
    await rm(partial, { force: true });
  }
}
