// The `event` notification's network payload (protocol spec 2.8), shared with the SDK.
import type { WireNetworkEvent } from "../../protocol/rpc.js";

export type NetworkEvent = WireNetworkEvent;

export type NetworkEventSink = (event: NetworkEvent) => void;

export const BlockReason = {
  HOST: "host not in allowlist",
  SECRET: "secret placeholder sent to unauthorized host",
  PRIVATE: "destination resolves to a private address",
  HOST_ADDRESS: "destination is an address of the engine's own host",
  CONNECTIONS: "too many open connections from this sandbox",
  /** A placeholder in a plain HTTP request, for a secret not allowed to travel unencrypted. */
  CLEARTEXT: "secret placeholder sent over cleartext HTTP",
  /** Framing the proxy will not pass on: it could hide a second request from the checks. */
  MALFORMED: "malformed or ambiguous request",
  /** A secret's host answered in a form the proxy cannot scan for the secret's value. */
  UNSCANNABLE: "response from a secret's host cannot be scanned",
  /** The proxy is transparent: a CONNECT tunnel would carry bytes it never parsed. */
  TUNNEL: "CONNECT tunnels are not offered",
} as const;
