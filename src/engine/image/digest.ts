// sha256 digests of blobs and layers, streamed so big layers never sit in memory.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";

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

/** sha256 of the tar inside a possibly compressed layer: what a config's rootfs.diff_ids lists. */
export async function sha256Uncompressed(file: string): Promise<string> {
  // Loaded here, not at the top: the store imports this file on every engine start.
  const { decompressed, fileCompression } = await import("./decompress.js");
  const compression = await fileCompression(file);
  if (compression === "none") return sha256File(file);
  const hash = createHash("sha256");
  try {
    await pipeline(decompressed(createReadStream(file), compression), hash);
  } catch (e) {
    throw new Error(`${file}: not a readable ${compression} file: ${(e as Error).message}`, { cause: e });
  }
  return `sha256:${hash.digest("hex")}`;
}

export class DigestMismatchError extends EngineError {
  readonly kind: ErrorKind = "policy_refused";
}

export function checkDigest(what: string, expected: string, actual: string): void {
  if (expected !== actual) {
    throw new DigestMismatchError(`${what} is corrupted: its content has digest ${actual}, expected ${expected}`);
  }
}
