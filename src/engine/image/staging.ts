// Files of an unpacked image archive, addressed by the paths its JSON names. Those paths come
// from the archive itself, so they are confined to the staging directory.
import { readFile, realpath, stat } from "node:fs/promises";
import { join, sep } from "node:path";
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
   * The config's rootfs.diff_ids (each layer's uncompressed digest), when the layers have not been
   * checked against them yet: the store then checks before unpacking. Every layer must match its
   * config, because content is stored under the config's digest and later imports or pulls of
   * that digest reuse it (a mismatch would poison it).
   */
  diffIds?: string[];
  /** The layers' blob digests (pulls), for messages and for dropping a layer that fails its diff_id. */
  layerDigests?: string[];
}
