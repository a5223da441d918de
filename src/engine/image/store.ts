// The local image store. Content-addressed: each image's rootfs is unpacked once per digest and
// refs point at digests, so a second ref for the same content shares it. An import unpacks into
// a private temp dir inside the store and is renamed into place only when complete, so a
// half-imported image is never visible and a failed import leaves nothing behind.
//
//   <root>/sha256/<hex>/image.json    StoredImage: digest, config, size, created, source
//   <root>/sha256/<hex>/rootfs/       the unpacked root file system (read-only for sandboxes)
//   <root>/refs/<urlencoded ref>.json {"ref": ..., "digest": ...}
//   <root>/blobs/sha256/<hex>         verified registry blobs (manifests, configs, layers), shared
//   <root>/partial/<hex>-<pid>-<rand> blob downloads in progress or cut off (resumed by the next pull)
//   <root>/tmp/<what>-<pid>-<rand>/   imports and pulls in progress, removals being deleted
//   <root>/lock                       held briefly while refs or content change
import { createHash, randomBytes } from "node:crypto";
import { lstat, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { paths } from "../paths.js";
// The import and pull machinery (tar, undici, layer unpacking) is loaded on first use, so that
// resolving an already-stored image, what every `create` does, starts the engine fast.
import { defaultConfig } from "./config.js";
import { SHA256_DIGEST, digestHex, sha256Uncompressed } from "./digest.js";
import { pidAlive } from "../process-identity.js";
import { withLock } from "./lock.js";
import { hostPlatform, parsePlatform } from "./platform.js";
import { formatRef, normalizeRef, parseRef } from "./reference.js";
import { BlobCache } from "./blob-cache.js";
import { PartialDownloads } from "./partial-downloads.js";
import type { PullEvent } from "./registry/pull.js";
import type { UnpackPlan } from "./staging.js";
import { treeSize } from "./tree-size.js";
import type { LocalImage, StoredImage } from "./types.js";
import { ZstdLimitError } from "./zstd-frames.js";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";

/**
 * A layer whose blob is what its digest says but that the store will not unpack: its uncompressed
 * content is not what the image config's rootfs.diff_ids say, or it is refused (a zstd window or
 * decoded size too big). The image is bad as published; layerIndex says which layer.
 */
class BadLayerError extends EngineError {
  readonly kind: ErrorKind = "failed";

  constructor(message: string, readonly layerIndex: number) {
    super(message);
  }
}

function causeOf<T extends Error>(e: unknown, kind: new (...args: never[]) => T): T | undefined {
  for (let c = e; c instanceof Error; c = c.cause) if (c instanceof kind) return c;
  return undefined;
}

export interface ImportOptions {
  /** Which image of a multi-platform OCI index to take; default linux/<host arch>. */
  platform?: string;
}

export interface PullStoreOptions {
  /** Which image of a multi-platform index to take; default linux/<host arch>. */
  platform?: string;
  onEvent?: ((e: PullEvent) => void) | undefined;
}

export interface PruneResult {
  images: number;
  blobs: number;
  blobBytes: number;
  /** Partial downloads of interrupted pulls deleted. */
  partials: number;
}

interface RefRecord {
  ref: string;
  digest: string;
  /** For pulled images: the manifest (or index) digest the ref resolved to. */
  repoDigest?: string;
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
  private readonly blobs: BlobCache;
  private readonly partials: PartialDownloads;

  constructor(readonly root: string = paths.images()) {
    this.blobs = new BlobCache(join(root, "blobs"));
    this.partials = new PartialDownloads(join(root, "partial"));
  }

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
      return this.load(named?.ref ?? ref, ref, named?.repoDigest);
    }
    const canonical = normalizeRef(ref);
    const record = await this.readRef(canonical);
    return record && this.load(canonical, record.digest, record.repoDigest);
  }

  async list(): Promise<LocalImage[]> {
    const images: LocalImage[] = [];
    for (const r of await this.readRefs()) {
      const image = await this.load(r.ref, r.digest, r.repoDigest);
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
      const { scanArchive, unpackArchive } = await import("./archive.js");
      const scan = await scanArchive(tarPath);
      let plan: UnpackPlan;
      if (scan.kind === "rootfs") {
        plan = { digest: scan.fileDigest, config: defaultConfig(), created: undefined, layers: [tarPath] };
      } else {
        const archiveDir = join(work, "archive");
        await mkdir(archiveDir);
        await unpackArchive(tarPath, archiveDir);
        const { StagedArchive } = await import("./staging.js");
        const staged = new StagedArchive(archiveDir, basename(tarPath));
        plan = scan.kind === "oci-layout"
          ? await (await import("./oci-layout.js")).readOciLayout(staged, platform)
          : await (await import("./docker-archive.js")).readDockerArchive(staged, canonical);
      }

      return await this.commit(canonical, plan, work, { source: `import:${scan.kind}` });
    } finally {
      await rm(work, { recursive: true, force: true });
      await this.sweepTmp();
    }
  }

  /**
   * Pulls `ref` from its registry (tag refs are looked up again even when present; use resolve()
   * first to avoid that). Blobs land in the shared blob cache as each one is verified, so an
   * interrupted pull resumes; the image itself appears only once completely unpacked.
   */
  async pull(ref: string, opts: PullStoreOptions = {}): Promise<LocalImage> {
    const parsed = parseRef(ref);
    const canonical = formatRef(parsed);
    const platform = opts.platform ? parsePlatform(opts.platform) : hostPlatform();
    await this.sweepTmp();
    const work = await this.makeTmp("pull");
    try {
      const { pullImage } = await import("./registry/pull.js");
      const pulled = await pullImage(parsed, {
        platform, cache: this.blobs, partials: this.partials, workDir: join(work, "blobs"), onEvent: opts.onEvent,
        isStored: (digest) => exists(join(this.contentDir(digest), "image.json")),
      });
      if (!pulled.alreadyStored) opts.onEvent?.({ type: "unpacking" });
      try {
        return await this.commit(canonical, pulled.plan, work, { source: "pull", blobs: pulled.blobs, repoDigest: pulled.manifestDigest, mustExist: pulled.alreadyStored });
      } catch (e) {
        if (!(e instanceof BadLayerError)) throw e;
        // Each blob matched its digest, but a layer disagrees with the config or cannot be used:
        // the image is bad as published. Forget its manifests, config and that layer, so nothing
        // of it is reused.
        const bad = [...pulled.manifests, pulled.plan.digest, pulled.plan.layerDigests?.[e.layerIndex]];
        for (const digest of bad) if (digest) await this.blobs.remove(digest);
        throw new BadLayerError(`${canonical}: ${e.message}`, e.layerIndex);
      }
    } finally {
      await rm(work, { recursive: true, force: true });
      await this.sweepTmp();
    }
  }

  /**
   * Unpacks a verified plan in `work` (unless that content is already stored) and, under the
   * lock, moves it into place and points `canonical` at it.
   */
  private async commit(canonical: string, plan: UnpackPlan, work: string, meta: { source: string; blobs?: string[]; repoDigest?: string; mustExist?: boolean }): Promise<LocalImage> {
    const target = this.contentDir(plan.digest);
    const imageDir = join(work, "image");
    if (!meta.mustExist && !(await exists(join(target, "image.json")))) {
      await this.unpack(plan, imageDir, meta.source, meta.blobs);
    }
    await withLock(this.lockFile, async () => {
      if (!(await exists(join(target, "image.json")))) {
        if (!(await exists(imageDir))) throw new Error(`image ${plan.digest} was removed while being stored; retry`);
        await mkdir(join(this.root, "sha256"), { recursive: true, mode: 0o700 });
        await rm(target, { recursive: true, force: true }); // a leftover without image.json
        await rename(imageDir, target);
      }
      const previous = await this.readRef(canonical);
      await this.writeRef({ ref: canonical, digest: plan.digest, ...(meta.repoDigest ? { repoDigest: meta.repoDigest } : {}) });
      if (previous && previous.digest !== plan.digest) await this.dropIfUnused(previous.digest);
    });
    const image = await this.load(canonical, plan.digest, meta.repoDigest);
    if (!image) throw new Error(`image ${plan.digest} disappeared right after it was stored`);
    return image;
  }

  /**
   * Deletes what no ref needs: unpacked images without a ref, cached blobs no stored image lists,
   * and leftovers of dead processes. Blobs of pulls in progress are safe: each pull holds its own
   * hard links.
   */
  async prune(): Promise<PruneResult> {
    const result = await withLock(this.lockFile, async () => {
      const refs = await this.readRefs();
      const used = new Set(refs.map((r) => r.digest));
      let images = 0;
      const keepBlobs = new Set<string>();
      for (const hex of await readdir(join(this.root, "sha256")).catch(() => [] as string[])) {
        const digest = `sha256:${hex}`;
        if (!SHA256_DIGEST.test(digest)) continue;
        if (used.has(digest)) {
          const stored = await this.readStored(digest);
          for (const b of stored?.blobs ?? []) keepBlobs.add(b);
          continue;
        }
        await rename(this.contentDir(digest), await this.makeTmp("removed", false));
        images++;
      }
      let blobs = 0;
      let bytes = 0;
      for (const b of await this.blobs.list()) {
        if (keepBlobs.has(b.digest)) continue;
        await this.blobs.remove(b.digest);
        blobs++;
        bytes += b.size;
      }
      return { images, blobs, blobBytes: bytes, partials: await this.partials.sweep() };
    });
    await this.sweepTmp();
    return result;
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

  private async unpack(plan: UnpackPlan, dir: string, source: string, blobs?: string[]): Promise<void> {
    const rootfs = join(dir, "rootfs");
    await mkdir(rootfs, { recursive: true, mode: 0o755 });
    if (plan.diffIds && plan.diffIds.length !== plan.layers.length) {
      throw new Error(`the image config lists ${plan.diffIds.length} layers but its manifest ${plan.layers.length}`);
    }
    const { applyLayer } = await import("./layer.js");
    const { decodeZstdOnce } = await import("./decoded-layer.js");
    for (const [i, layer] of plan.layers.entries()) {
      let decoded: Awaited<ReturnType<typeof decodeZstdOnce>>;
      try {
        const diffId = plan.diffIds?.[i];
        // Passes over the layer: its diff_id, the whiteout scan (over lower layers), the apply.
        decoded = await decodeZstdOnce(layer, dirname(dir), (diffId ? 1 : 0) + (i > 0 ? 1 : 0) + 1);
        const actual = diffId && (decoded?.diffId ?? (await sha256Uncompressed(layer)));
        if (diffId && actual !== diffId) {
          const name = plan.layerDigests?.[i] ?? `${i + 1}`;
          throw new BadLayerError(`layer ${name} does not match the image config: its uncompressed content has digest ${actual}, the config's rootfs.diff_ids say ${diffId}`, i);
        }
        await applyLayer(rootfs, decoded?.file ?? layer, { lowerLayers: i > 0 });
      } catch (e) {
        const which = plan.layers.length > 1 ? ` (layer ${i + 1} of ${plan.layers.length})` : "";
        const refused = causeOf(e, ZstdLimitError);
        if (refused) throw new BadLayerError(`cannot unpack the image${which}: layer ${plan.layerDigests?.[i] ?? i + 1} is refused: ${refused.message}`, i);
        const message = `cannot unpack the image${which}: ${(e as Error).message}`;
        throw e instanceof BadLayerError ? new BadLayerError(message, e.layerIndex) : new Error(message, { cause: e });
      } finally {
        await decoded?.remove();
      }
    }
    const stored: StoredImage = {
      digest: plan.digest,
      config: plan.config,
      sizeBytes: await treeSize(rootfs),
      created: isoTime(plan.created),
      source,
      ...(blobs ? { blobs } : {}),
    };
    await writeFile(join(dir, "image.json"), `${JSON.stringify(stored, null, 2)}\n`);
  }

  /** Under the lock: deletes content no ref points at (moved aside first, so it vanishes at once). */
  private async dropIfUnused(digest: string): Promise<void> {
    if ((await this.readRefs()).some((r) => r.digest === digest)) return;
    const dir = this.contentDir(digest);
    if (await exists(dir)) await rename(dir, await this.makeTmp("removed", false));
  }

  private async readStored(digest: string): Promise<StoredImage | undefined> {
    try {
      return JSON.parse(await readFile(join(this.contentDir(digest), "image.json"), "utf8")) as StoredImage;
    } catch {
      return undefined; // not there (or removed meanwhile)
    }
  }

  private async load(ref: string, digest: string, repoDigest?: string): Promise<LocalImage | undefined> {
    const stored = await this.readStored(digest);
    if (!stored) return undefined;
    return {
      ref, digest, rootfs: join(this.contentDir(digest), "rootfs"), config: stored.config, sizeBytes: stored.sizeBytes,
      created: stored.created, source: stored.source, ...(repoDigest ? { repoDigest } : {}),
    };
  }

  private async readRefFile(file: string): Promise<RefRecord | undefined> {
    try {
      const r = JSON.parse(await readFile(file, "utf8")) as Partial<RefRecord>;
      const valid = typeof r.ref === "string" && typeof r.digest === "string" && SHA256_DIGEST.test(r.digest);
      if (!valid) return undefined;
      const repoDigest = typeof r.repoDigest === "string" && SHA256_DIGEST.test(r.repoDigest) ? r.repoDigest : undefined;
      return { ref: r.ref!, digest: r.digest!, ...(repoDigest ? { repoDigest } : {}) };
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
    await mkdir(join(this.root, "refs"), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify(r)}\n`);
    await rename(tmp, file);
  }

  /** A fresh path under tmp/ named after this process, so dead processes' leftovers can be swept. */
  private async makeTmp(what: string, create = true): Promise<string> {
    await mkdir(join(this.root, "tmp"), { recursive: true, mode: 0o700 });
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
