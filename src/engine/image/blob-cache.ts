// Content-addressed blobs (manifests, configs, compressed layers) shared by every image pulled
// into the store: <root>/blobs/sha256/<hex>. A blob enters the cache only once verified, by a hard
// link from the pull's private work dir, so the cache never holds a partial or unverified file,
// and a pull keeps its own link to each blob it uses: `prune` removing a cache entry meanwhile
// cannot pull the floor from under it.
import { link, lstat, readdir, rm, stat } from "node:fs/promises";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { digestHex } from "./digest.js";

export class BlobCache {
  constructor(readonly dir: string) {}

  path(digest: string): string {
    return join(this.dir, "sha256", digestHex(digest, "blob digest"));
  }

  /** Hard-links a cached blob of the expected size to `file`; false when it is not cached. */
  async linkTo(digest: string, size: number, file: string): Promise<boolean> {
    try {
      await link(this.path(digest), file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw e;
    }
    if ((await stat(file)).size === size) return true;
    await rm(file, { force: true }); // cannot happen unless someone wrote into the cache
    return false;
  }

  /** Adds a verified file (it stays where it is too). A blob already there is the same content. */
  async adopt(file: string, digest: string): Promise<void> {
    await mkdir(join(this.dir, "sha256"), { recursive: true, mode: 0o700 });
    try {
      await link(file, this.path(digest));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
  }

  async list(): Promise<Array<{ digest: string; size: number }>> {
    const names = await readdir(join(this.dir, "sha256")).catch(() => [] as string[]);
    const out: Array<{ digest: string; size: number }> = [];
    for (const hex of names) {
      if (!/^[a-f0-9]{64}$/.test(hex)) continue;
      const st = await lstat(join(this.dir, "sha256", hex)).catch(() => undefined);
      if (st) out.push({ digest: `sha256:${hex}`, size: st.size });
    }
    return out;
  }

  async remove(digest: string): Promise<void> {
    await rm(this.path(digest), { force: true });
  }
}
