// OCI whiteouts (image-spec layer.md): ".wh.<name>" deletes <name> of lower layers and
// ".wh..wh..opq" empties its directory of lower-layer content. They only ever hide what lower
// layers made, never entries of their own layer, so a layer's whiteouts are collected in a first
// pass and applied before the layer is extracted (which then skips the whiteout files).
import { readdir } from "node:fs/promises";
import { RootfsWriter, UnsafeEntryError, safeParts } from "./rootfs-writer.js";
import { readTar } from "./tar-reader.js";

export const WHITEOUT_PREFIX = ".wh.";
const OPAQUE = ".wh..wh..opq";

export interface Whiteouts {
  /** Paths (as parts) to delete. */
  deleted: string[][];
  /** Directories (as parts) whose lower-layer content disappears. */
  opaque: string[][];
}

export function isWhiteoutPath(path: string): boolean {
  const name = path.split("/").filter(Boolean).at(-1) ?? "";
  return name.startsWith(WHITEOUT_PREFIX);
}

export async function scanWhiteouts(layerFile: string): Promise<Whiteouts> {
  const found: Whiteouts = { deleted: [], opaque: [] };
  await readTar(layerFile, async (entry) => {
    entry.resume();
    const parts = safeParts(entry.path);
    const name = parts.at(-1);
    if (!name?.startsWith(WHITEOUT_PREFIX)) return;
    const dir = parts.slice(0, -1);
    if (name === OPAQUE) return void found.opaque.push(dir);
    if (name.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) return; // other AUFS metadata
    const target = name.slice(WHITEOUT_PREFIX.length);
    if (target === "" || target === "." || target === "..") {
      throw new UnsafeEntryError(`tar entry ${JSON.stringify(entry.path)}: malformed whiteout`);
    }
    found.deleted.push([...dir, target]);
  });
  return found;
}

/**
 * Applies whiteouts to the rootfs built so far. A whiteout under a path that is not a real
 * directory (missing, or a symlink) hides nothing: overlay semantics never follow symlinks.
 */
export async function applyWhiteouts(w: RootfsWriter, wh: Whiteouts): Promise<void> {
  for (const dir of wh.opaque) {
    const abs = w.existingDir(dir);
    if (abs === undefined) continue;
    for (const child of await readdir(abs)) w.remove([...dir, child]);
  }
  for (const parts of wh.deleted) {
    if (w.existingDir(parts.slice(0, -1)) !== undefined) w.remove(parts);
  }
}
