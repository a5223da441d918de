// Files of an unpacked image archive, addressed by the paths its JSON names. Those paths come
// from the archive itself, so they are confined to the staging directory.
import { readFile, realpath, stat } from "node:fs/promises";
import { join, sep } from "node:path";
import { fileCompression } from "./decompress.js";
import { checkDigest } from "./digest.js";
import type { ImageConfig } from "./types.js";

export class StagedArchive {
  constructor(readonly dir: string, readonly label: string) {}

  /** Absolute path of an existing regular file named by the archive (symlinks within it are fine). */
  async file(rel: string, what: string): Promise<string> {
    if (rel.startsWith("/") || rel.split("/").includes("..")) {
      throw new Error(`${this.label}: ${what} path ${JSON.stringify(rel)} points outside the archive`);
    }
    let real: string;
    try {
      real = await realpath(join(this.dir, rel));
    } catch {
      throw new Error(`${this.label}: ${what} ${JSON.stringify(rel)} is missing from the archive`);
    }
    const root = await realpath(this.dir);
    if (!real.startsWith(root + sep) || !(await stat(real)).isFile()) {
      throw new Error(`${this.label}: ${what} ${JSON.stringify(rel)} is not a file inside the archive`);
    }
    return real;
  }

  async readJson(rel: string, what: string): Promise<{ bytes: Buffer; json: unknown }> {
    const bytes = await readFile(await this.file(rel, what));
    try {
      return { bytes, json: JSON.parse(bytes.toString("utf8")) };
    } catch (e) {
      throw new Error(`${this.label}: ${what} ${JSON.stringify(rel)} is not valid JSON (${(e as Error).message})`);
    }
  }
}

/** What every archive kind boils down to: the content digest, the config, layers in order. */
export interface UnpackPlan {
  digest: string;
  config: ImageConfig;
  created: string | undefined;
  /** Absolute paths of the layer tarballs (gzip'd or not), lowest first, already verified. */
  layers: string[];
  /**
   * The config's rootfs.diff_ids (each layer's uncompressed digest) for the layers not checked
   * against them yet (undefined for one that was): the store checks each as it decodes the layer
   * to unpack it, so a compressed layer is decoded once. Every layer must match its config,
   * because content is stored under the config's digest and later imports or pulls of that digest
   * reuse it (a mismatch would poison it).
   */
  diffIds?: Array<string | undefined>;
  /** The layers' blob digests (pulls), for messages and for dropping a layer that fails its diff_id. */
  layerDigests?: string[];
}

/**
 * The diff_id the store still has to check for an imported layer whose blob digest is known:
 * none for a plain tar, whose blob digest is its diff_id (compared here, refused as `what` when
 * they differ); a compressed layer's own, for the store to check while it decodes the layer.
 */
export async function diffIdToCheck(file: string, blobDigest: string, diffId: string, what: string): Promise<string | undefined> {
  if ((await fileCompression(file)) !== "none") return diffId;
  checkDigest(what, diffId, blobDigest);
  return undefined;
}
