// The `matchlock image ...` subcommands as plain functions, for the CLI to wire into commander:
// each returns data (rows for a table or --json) and throws an Error with a clear message.
import { familiarRef } from "./reference.js";
import { ImageStore, type ImportOptions } from "./store.js";
import type { LocalImage } from "./types.js";

export interface ImageRow {
  ref: string;
  /** The ref as people write it ("alpine:latest" for docker.io/library/alpine:latest). */
  name: string;
  digest: string;
  /** First 12 hex digits of the digest, as `docker images` shows IDs. */
  id: string;
  sizeBytes: number;
  created: string;
  source: string;
  rootfs: string;
}

export function toRow(i: LocalImage): ImageRow {
  return {
    ref: i.ref,
    name: familiarRef(i.ref),
    digest: i.digest,
    id: i.digest.replace(/^sha256:/, "").slice(0, 12),
    sizeBytes: i.sizeBytes,
    created: i.created,
    source: i.source,
    rootfs: i.rootfs,
  };
}

export async function importCommand(ref: string, file: string, opts: ImportOptions = {}, store = new ImageStore()): Promise<ImageRow> {
  return toRow(await store.import(ref, file, opts));
}

export async function listImages(store = new ImageStore()): Promise<ImageRow[]> {
  return (await store.list()).map(toRow);
}

/** Throws when the ref is not in the store, so the CLI exits non-zero. */
export async function removeImage(ref: string, store = new ImageStore()): Promise<void> {
  if (!(await store.remove(ref))) throw new Error(`image ${ref} is not in the local store`);
}

/** "12.3 MB" for tables. */
export function formatSize(bytes: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let n = bytes;
  let u = 0;
  while (n >= 1000 && u < units.length - 1) {
    n /= 1000;
    u++;
  }
  return `${u === 0 ? n : n.toFixed(1)} ${units[u]}`;
}

/** A plain-text table: NAME, ID, SIZE, CREATED. */
export function formatImageTable(rows: ImageRow[]): string {
  const lines = [["NAME", "ID", "SIZE", "CREATED"], ...rows.map((r) => [r.name, r.id, formatSize(r.sizeBytes), r.created])];
  const widths = lines[0]!.map((_, c) => Math.max(...lines.map((l) => l[c]!.length)));
  return lines.map((l) => l.map((cell, c) => (c === l.length - 1 ? cell : cell.padEnd(widths[c]!))).join("  ")).join("\n");
}
