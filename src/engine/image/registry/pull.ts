// Pulling one image: resolve the ref to a manifest (through an index, for the host's platform),
// fetch its config and layers into the blob cache (skipping what is cached: an interrupted pull
// resumes with the blobs it had finished, and blobs it had started continue from where they
// stopped), all verified, and hand back an UnpackPlan for the
// store to unpack and commit like any import.
import { mkdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { BlobCache } from "../blob-cache.js";
import type { PartialDownloads } from "../partial-downloads.js";
import { parseConfigJson } from "../config.js";
import { checkDigest, DigestMismatchError, digestHex } from "../digest.js";
import { checkLayerType, indexSchema, isIndex, manifestSchema, MAX_INDEX_DEPTH, parseWith, pickPlatform, type Descriptor } from "../manifest.js";
import type { Platform } from "../platform.js";
import { formatRef, type ParsedRef } from "../reference.js";
import type { UnpackPlan } from "../staging.js";
import { RegistryClient, RegistryError, type FetchedManifest } from "./client.js";

const PARALLEL_DOWNLOADS = 3;

export type PullEvent =
  | { type: "resolved"; manifestDigest: string; layers: Array<{ digest: string; size: number }> }
  | { type: "progress"; digest: string; bytes: number; size: number }
  | { type: "layer-done"; digest: string; cached: boolean }
  | { type: "unpacking" }
  /** The image (by config digest) is already in the store: no layer is fetched. */
  | { type: "up-to-date"; digest: string };

export interface PullOptions {
  platform: Platform;
  cache: BlobCache;
  partials: PartialDownloads;
  /** A private directory (in the store, so hard links work) for downloads in progress. */
  workDir: string;
  onEvent?: ((e: PullEvent) => void) | undefined;
  /** True when the store already has this image unpacked, so its layers are not needed. */
  isStored?: ((configDigest: string) => Promise<boolean>) | undefined;
}

export interface PulledImage {
  plan: UnpackPlan;
  /** The digest of the manifest the ref resolved to first (an index for multi-arch images). */
  manifestDigest: string;
  /** Every blob the image is made of, for `prune` to keep. */
  blobs: string[];
  /** The manifests (and indexes) among them. */
  manifests: string[];
  /** The store had the image: plan.layers is empty and nothing is to be unpacked. */
  alreadyStored: boolean;
}

function sizeOf(d: Descriptor, label: string): number {
  if (typeof d.size !== "number") throw new RegistryError(`${label}: descriptor ${d.digest} has no size`);
  return d.size;
}

class Puller {
  private readonly blobs: string[] = [];
  private readonly manifests: string[] = [];
  private readonly inFlight = new Map<string, Promise<{ file: string; cached: boolean }>>();

  constructor(private readonly client: RegistryClient, private readonly opts: PullOptions, private readonly label: string) {}

  /** A verified copy of the blob in the work dir (from the cache, else downloaded and cached). */
  blob(d: Descriptor, onBytes: (n: number) => void = () => undefined): Promise<{ file: string; cached: boolean }> {
    // An image may list one blob twice (e.g. identical empty layers): fetch it once.
    let p = this.inFlight.get(d.digest);
    if (!p) {
      p = this.fetchBlob(d, onBytes);
      this.inFlight.set(d.digest, p);
    }
    return p;
  }

  private async fetchBlob(d: Descriptor, onBytes: (n: number) => void): Promise<{ file: string; cached: boolean }> {
    const hex = digestHex(d.digest, `${this.label}: blob`);
    const size = sizeOf(d, this.label);
    const file = join(this.opts.workDir, hex);
    this.blobs.push(d.digest);
    if (await this.opts.cache.linkTo(d.digest, size, file).catch(() => false)) return { file, cached: true };
    const partial = await this.opts.partials.claim(hex);
    try {
      const resuming = ((await stat(partial).catch(() => undefined))?.size ?? 0) > 0;
      try {
        await this.client.downloadBlob(d.digest, size, partial, onBytes);
      } catch (e) {
        // The kept start of an earlier attempt may be what is wrong: once more, from scratch.
        if (!(resuming && e instanceof DigestMismatchError)) throw e;
        await this.client.downloadBlob(d.digest, size, partial, onBytes);
      }
      await rename(partial, file);
    } finally {
      this.opts.partials.release(partial);
    }
    await this.opts.cache.adopt(file, d.digest);
    return { file, cached: false };
  }

  async manifestByDigest(d: Descriptor): Promise<FetchedManifest> {
    digestHex(d.digest, `${this.label}: manifest`);
    const m = await this.client.manifest(d.digest);
    checkDigest(`${this.label}: manifest ${d.digest} from ${this.client.host}`, d.digest, m.digest);
    return this.keep(m);
  }

  /** Manifests are blobs too: cached, so the image's full description stays on disk. */
  private async keep(m: FetchedManifest): Promise<FetchedManifest> {
    const file = join(this.opts.workDir, digestHex(m.digest, this.label));
    await writeFile(file, m.bytes, { mode: 0o600 });
    await this.opts.cache.adopt(file, m.digest);
    this.blobs.push(m.digest);
    this.manifests.push(m.digest);
    return m;
  }

  async run(ref: ParsedRef): Promise<PulledImage> {
    const top = await this.client.manifest(ref.digest ?? ref.tag ?? "latest");
    if (ref.digest) checkDigest(`${this.label}: manifest from ${this.client.host}`, ref.digest, top.digest);
    await this.keep(top);
    let current = top;
    for (let depth = 0; isIndex(current.mediaType, current.json); depth++) {
      if (depth >= MAX_INDEX_DEPTH) throw new RegistryError(`${this.label}: image indexes nested too deep`);
      const index = parseWith(indexSchema, current.json, "image index", this.label);
      const chosen = pickPlatform(index.manifests, this.opts.platform, this.label, "the image index");
      current = await this.manifestByDigest(chosen);
    }
    if ((current.json as { schemaVersion?: unknown } | null)?.schemaVersion === 1) {
      throw new RegistryError(`${this.label}: the registry only has a Docker schema 1 manifest, which is not supported`);
    }
    const manifest = parseWith(manifestSchema, current.json, "image manifest", this.label);
    manifest.layers.forEach((d) => {
      checkLayerType(d, this.label);
      digestHex(d.digest, `${this.label}: layer`);
      sizeOf(d, this.label);
    });
    this.opts.onEvent?.({ type: "resolved", manifestDigest: top.digest, layers: manifest.layers.map((d) => ({ digest: d.digest, size: d.size! })) });

    const configFile = (await this.blob(manifest.config)).file;
    const configBytes = await readFile(configFile);
    const { config, created, diffIds } = parseConfigJson(configBytes, this.label);
    const blobs = () => [...new Set([...this.blobs, ...manifest.layers.map((d) => d.digest)])];
    if (await this.opts.isStored?.(manifest.config.digest)) {
      this.opts.onEvent?.({ type: "up-to-date", digest: manifest.config.digest });
      return { plan: { digest: manifest.config.digest, config, created, layers: [] }, manifestDigest: top.digest, blobs: blobs(), manifests: this.manifests, alreadyStored: true };
    }

    const layers = new Array<string>(manifest.layers.length);
    let next = 0;
    const worker = async () => {
      while (next < manifest.layers.length) {
        const i = next++;
        const d = manifest.layers[i]!;
        let bytes = 0;
        const got = await this.blob(d, (n) => {
          bytes += n;
          this.opts.onEvent?.({ type: "progress", digest: d.digest, bytes, size: d.size! });
        });
        layers[i] = got.file;
        this.opts.onEvent?.({ type: "layer-done", digest: d.digest, cached: got.cached });
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_DOWNLOADS, layers.length) }, worker));
    const layerDigests = manifest.layers.map((d) => d.digest);
    return { plan: { digest: manifest.config.digest, config, created, layers, diffIds, layerDigests }, manifestDigest: top.digest, blobs: blobs(), manifests: this.manifests, alreadyStored: false };
  }
}

/** Fetches everything `ref` needs from its registry; throws RegistryError (etc.) with clear messages. */
export async function pullImage(ref: ParsedRef, opts: PullOptions): Promise<PulledImage> {
  const label = formatRef(ref);
  await mkdir(opts.workDir, { recursive: true });
  const client = RegistryClient.open(ref.domain, ref.path, label);
  try {
    return await new Puller(client, opts, label).run(ref);
  } finally {
    await client.close();
  }
}
