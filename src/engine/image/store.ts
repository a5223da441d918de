// The local image store. Content-addressed: each image's rootfs is unpacked once per digest and
// refs point at digests, so a second ref for the same content shares it. An import unpacks into
// a private temp dir inside the store and is renamed into place only when complete, so a
// half-imported image is never visible and a failed import leaves nothing behind.
//
//   <root>/sha256/<hex>/image.json    StoredImage: digest, config, size, created, source
//   <root>/sha256/<hex>/rootfs/       the unpacked root file system (read-only for sandboxes)
//   <root>/refs/<urlencoded ref>.json {"ref": ..., "digest": ...}
//   <root>/tmp/<what>-<pid>-<rand>/   imports in progress, removals being deleted
//   <root>/lock                       held briefly while refs or content change
import { createHash, randomBytes } from "node:crypto";
import { lstat, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { paths } from "../paths.js";
import { scanArchive, unpackArchive } from "./archive.js";
import { defaultConfig } from "./config.js";
import { SHA256_DIGEST, digestHex } from "./digest.js";
import { readDockerArchive } from "./docker-archive.js";
import { applyLayer } from "./layer.js";
import { pidAlive, withLock } from "./lock.js";
import { readOciLayout } from "./oci-layout.js";
import { hostPlatform, parsePlatform } from "./platform.js";
import { normalizeRef } from "./reference.js";
import { StagedArchive, type UnpackPlan } from "./staging.js";
import { treeSize } from "./tree-size.js";
import type { LocalImage, StoredImage } from "./types.js";

export interface ImportOptions {
  /** Which image of a multi-platform OCI index to take; default linux/<host arch>. */
  platform?: string;
}

interface RefRecord {
  ref: string;
  digest: string;
}

/** $MATCHLOCK_IMAGES (lets several homes share one store, as the e2e tests do), else <home>/images. */
export function defaultImagesRoot(): string {
  return process.env.MATCHLOCK_IMAGES || paths.images();
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(() => true, () => false);
}

/** Normalizes a config's creation time to ISO; falls back to now (plain rootfs, junk values). */
function isoTime(s: string | undefined): string {
  const t = s ? new Date(s) : undefined;
  return t && !Number.isNaN(t.getTime()) ? t.toISOString() : new Date().toISOString();
}

export class ImageStore {
  constructor(readonly root: string = defaultImagesRoot()) {}

  private contentDir(digest: string): string {
    return join(this.root, "sha256", digestHex(digest, "image digest"));
  }

  /** Readable file names; a hash for the rare ref too long for one (the record holds the ref). */
  private refFile(ref: string): string {
    const encoded = encodeURIComponent(ref);
    const name = encoded.length <= 200 ? encoded : `sha256-${createHash("sha256").update(ref).digest("hex")}`;
    return join(this.root, "refs", `${name}.json`);
  }

  private get lockFile(): string {
    return join(this.root, "lock");
  }

  /** The image a ref (or an image digest "sha256:<hex>") names, undefined if not in the store. */
  async resolve(ref: string): Promise<LocalImage | undefined> {
    if (SHA256_DIGEST.test(ref)) {
      const named = (await this.readRefs()).find((r) => r.digest === ref);
      return this.load(named?.ref ?? ref, ref);
    }
    const canonical = normalizeRef(ref);
    const record = await this.readRef(canonical);
    return record && this.load(canonical, record.digest);
  }

  async list(): Promise<LocalImage[]> {
    const images: LocalImage[] = [];
    for (const r of await this.readRefs()) {
      const image = await this.load(r.ref, r.digest);
      if (image) images.push(image);
    }
    return images.sort((a, b) => a.ref.localeCompare(b.ref));
  }

  /** Imports a rootfs, `docker save` or OCI layout tarball (gzip'd or not) under `ref`. */
  async import(ref: string, tarPath: string, opts: ImportOptions = {}): Promise<LocalImage> {
    const canonical = normalizeRef(ref);
    const platform = opts.platform ? parsePlatform(opts.platform) : hostPlatform();
    const st = await stat(tarPath).catch((e: Error) => {
      throw new Error(`cannot import ${tarPath}: ${e.message}`);
    });
    if (!st.isFile()) throw new Error(`cannot import ${tarPath}: not a file`);

    await this.sweepTmp();
    const work = await this.makeTmp("import");
    try {
      const scan = await scanArchive(tarPath);
      let plan: UnpackPlan;
      if (scan.kind === "rootfs") {
        plan = { digest: scan.fileDigest, config: defaultConfig(), created: undefined, layers: [tarPath] };
      } else {
        const archiveDir = join(work, "archive");
        await mkdir(archiveDir);
        await unpackArchive(tarPath, archiveDir);
        const staged = new StagedArchive(archiveDir, basename(tarPath));
        plan = scan.kind === "oci-layout" ? await readOciLayout(staged, platform) : await readDockerArchive(staged, canonical);
      }

      const target = this.contentDir(plan.digest);
      const imageDir = join(work, "image");
      if (!(await exists(join(target, "image.json")))) {
        await this.unpack(plan, imageDir, `import:${scan.kind}`);
      }
      await withLock(this.lockFile, async () => {
        if (!(await exists(join(target, "image.json")))) {
          if (!(await exists(imageDir))) throw new Error(`image ${plan.digest} was removed while being imported; retry`);
          await mkdir(join(this.root, "sha256"), { recursive: true });
          await rm(target, { recursive: true, force: true }); // a leftover without image.json
          await rename(imageDir, target);
        }
        const previous = await this.readRef(canonical);
        await this.writeRef({ ref: canonical, digest: plan.digest });
        if (previous && previous.digest !== plan.digest) await this.dropIfUnused(previous.digest);
      });
      const image = await this.load(canonical, plan.digest);
      if (!image) throw new Error(`image ${plan.digest} disappeared right after its import`);
      return image;
    } finally {
      await rm(work, { recursive: true, force: true });
      await this.sweepTmp();
    }
  }

  /** Removes a ref, and its image when no other ref uses it. False when the ref was not there. */
  async remove(ref: string): Promise<boolean> {
    const canonical = normalizeRef(ref);
    const removed = await withLock(this.lockFile, async () => {
      const record = await this.readRef(canonical);
      if (!record) return false;
      await rm(this.refFile(canonical), { force: true });
      await this.dropIfUnused(record.digest);
      return true;
    });
    await this.sweepTmp();
    return removed;
  }

  private async unpack(plan: UnpackPlan, dir: string, source: string): Promise<void> {
    const rootfs = join(dir, "rootfs");
    await mkdir(rootfs, { recursive: true, mode: 0o755 });
    for (const [i, layer] of plan.layers.entries()) {
      try {
        await applyLayer(rootfs, layer, { lowerLayers: i > 0 });
      } catch (e) {
        const which = plan.layers.length > 1 ? ` (layer ${i + 1} of ${plan.layers.length})` : "";
        throw new Error(`cannot unpack the image${which}: ${(e as Error).message}`, { cause: e });
      }
    }
    const stored: StoredImage = {
      digest: plan.digest,
      config: plan.config,
      sizeBytes: await treeSize(rootfs),
      created: isoTime(plan.created),
      source,
    };
    await writeFile(join(dir, "image.json"), `${JSON.stringify(stored, null, 2)}\n`);
  }

  /** Under the lock: deletes content no ref points at (moved aside first, so it vanishes at once). */
  private async dropIfUnused(digest: string): Promise<void> {
    if ((await this.readRefs()).some((r) => r.digest === digest)) return;
    const dir = this.contentDir(digest);
    if (await exists(dir)) await rename(dir, await this.makeTmp("removed", false));
  }

  private async load(ref: string, digest: string): Promise<LocalImage | undefined> {
    const dir = this.contentDir(digest);
    let stored: StoredImage;
    try {
      stored = JSON.parse(await readFile(join(dir, "image.json"), "utf8")) as StoredImage;
    } catch {
      return undefined; // not there (or removed meanwhile)
    }
    return { ref, digest, rootfs: join(dir, "rootfs"), config: stored.config, sizeBytes: stored.sizeBytes, created: stored.created, source: stored.source };
  }

  private async readRefFile(file: string): Promise<RefRecord | undefined> {
    try {
      const r = JSON.parse(await readFile(file, "utf8")) as Partial<RefRecord>;
      const valid = typeof r.ref === "string" && typeof r.digest === "string" && SHA256_DIGEST.test(r.digest);
      return valid ? { ref: r.ref!, digest: r.digest! } : undefined;
    } catch {
      return undefined;
    }
  }

  private async readRef(ref: string): Promise<RefRecord | undefined> {
    const r = await this.readRefFile(this.refFile(ref));
    return r?.ref === ref ? r : undefined;
  }

  private async readRefs(): Promise<RefRecord[]> {
    const dir = join(this.root, "refs");
    const names = await readdir(dir).catch(() => [] as string[]);
    const records: RefRecord[] = [];
    for (const name of names) {
      const r = name.endsWith(".json") ? await this.readRefFile(join(dir, name)) : undefined;
      if (r) records.push(r);
    }
    return records;
  }

  /** Atomic: a reader sees the old ref or the new one, never a partial file. */
  private async writeRef(r: RefRecord): Promise<void> {
    const file = this.refFile(r.ref);
    await mkdir(join(this.root, "refs"), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify(r)}\n`);
    await rename(tmp, file);
  }

  /** A fresh path under tmp/ named after this process, so dead processes' leftovers can be swept. */
  private async makeTmp(what: string, create = true): Promise<string> {
    await mkdir(join(this.root, "tmp"), { recursive: true });
    const dir = join(this.root, "tmp", `${what}-${process.pid}-${randomBytes(6).toString("hex")}`);
    if (create) await mkdir(dir, { mode: 0o700 });
    return dir;
  }

  /** Deletes what crashed imports left and what removals moved aside (whose owner has finished). */
  private async sweepTmp(): Promise<void> {
    const names = await readdir(join(this.root, "tmp")).catch(() => [] as string[]);
    for (const name of names) {
      const pid = Number(/^[a-z]+-(\d+)-/.exec(name)?.[1]);
      const mine = pid === process.pid && name.startsWith("removed-");
      if (mine || !pidAlive(pid)) await rm(join(this.root, "tmp", name), { recursive: true, force: true });
    }
  }
}
