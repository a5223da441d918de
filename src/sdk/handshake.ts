// The SDK's half of the version handshake (src/protocol/handshake.ts): asked once per session,
// before anything else is sent, so a mismatched engine is refused before it touches a sandbox.
import { HANDSHAKE_METHOD, PROTOCOL_VERSION } from "../protocol/handshake.js";
import { MatchlockError, RPCError } from "./errors.js";
import type { Transport } from "./transport.js";

/**
 * Resolves when this SDK can drive the engine: true for our engine (its extensions may be
 * used), false for one that predates the handshake (upstream's). Rejects when it speaks
 * another protocol.
 */
export async function shakeHands(transport: Transport, engine: string): Promise<boolean> {
  let result;
  try {
    result = await transport.request(HANDSHAKE_METHOD);
  } catch (err) {
    // Any error reply (a seed engine's "Method not found", or its own refusal of the name) is an
    // engine that predates the handshake: it is driven with the seed protocol, as the spec allows.
    if (err instanceof RPCError) return false;
    throw err;
  }
  const version = typeof result.version === "string" ? result.version : "unknown version";
  if (result.engine !== "matchlock" || result.protocol !== PROTOCOL_VERSION) {
    throw new MatchlockError(
      `the engine ${engine} (${String(result.engine)} ${version}) speaks protocol ${JSON.stringify(result.protocol)}, ` +
        `but this SDK speaks protocol ${PROTOCOL_VERSION}: use the engine of the same matchlock package ` +
        "(leave Config.binaryPath unset), or install matching versions of both",
    );
  }
  return true;
}
