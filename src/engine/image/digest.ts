// sha256 digests of blobs and layers, streamed so big layers never sit in memory.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";

export const SHA256_DIGEST = /^sha256:([a-f0-9]{64})$/;

/** The hex part of "sha256:<hex>"; throws for anything else (we only verify sha256). */
export function digestHex(digest: string, where: string): string {
  const m = SHA256_DIGEST.exec(digest);
  if (!m) throw new Error(`${where}: unsupported or malformed digest ${JSON.stringify(digest)} (expected sha256:<64 hex>)`);
  return m[1]!;
}

export function sha256Bytes(bytes: Buffer): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  await pipeline(createReadStream(file), hash);
  return `sha256:${hash.digest("hex")}`;
}

export async function isGzip(file: string): Promise<boolean> {
  const fh = await open(file, "r");
  try {
    const head = Buffer.alloc(2);
    const { bytesRead } = await fh.read(head, 0, 2, 0);
    return bytesRead === 2 && head[0] === 0x1f && head[1] === 0x8b;
  } finally {
    await fh.close();
  }
}

/** sha256 of the tar inside a possibly gzip'd layer: what a config's rootfs.diff_ids lists. */
export async function sha256Uncompressed(file: string): Promise<string> {
  if (!(await isGzip(file))) return sha256File(file);
  const hash = createHash("sha256");
  await pipeline(createReadStream(file), createGunzip(), hash);
  return `sha256:${hash.digest("hex")}`;
}

export class DigestMismatchError extends Error {}

export function checkDigest(what: string, expected: string, actual: string): void {
  if (expected !== actual) {
    throw new DigestMismatchError(`${what} is corrupted: its content has digest ${actual}, expected ${expected}`);
  }
}
