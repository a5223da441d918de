// The version handshake, a matchlock extension of the protocol: the SDK's first request on a new
// session asks the engine what it speaks, so that an SDK never drives an engine of another
// protocol generation (e.g. a stale or foreign `matchlock` binary) without saying so. Engines of
// the seed protocol answer it with "Method not found" and are driven with seed methods only.
import { readFileSync } from "node:fs";
import { Method } from "./methods.js";

export const HANDSHAKE_METHOD = Method.HANDSHAKE;

/** Bumped whenever either half starts relying on something the other half's older releases lack. */
export const PROTOCOL_VERSION = 1;

/** What our engine answers. */
export interface HandshakeResult {
  engine: "matchlock";
  /** The engine's package version, for messages. */
  version: string;
  protocol: number;
}

let version: string | undefined;

/**
 * This package's version. The file sits three directories below the package root whether it
 * runs from dist/src/protocol/ or from the engine bundle in dist/bundle/rpc/.
 */
export function packageVersion(): string {
  version ??= (JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string }).version;
  return version;
}

export function handshakeResult(): HandshakeResult {
  return { engine: "matchlock", version: packageVersion(), protocol: PROTOCOL_VERSION };
}
