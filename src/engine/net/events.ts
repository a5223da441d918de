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
} as const;
