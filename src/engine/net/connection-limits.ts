// How much of the host one sandbox's network may hold. Every guest connection costs the engine
// file descriptors (the guest's socket and the upstream one) and the host conntrack entries; a
// resident engine serves many sandboxes, and the conntrack table is the whole host's, so one
// sandbox must not be able to take them all. Two engine-wide settings, read when a sandbox's
// network is set up:
// - MATCHLOCK_NET_MAX_CONNECTIONS: TCP connections one sandbox may have open in the engine at
//   once (default 512); more are reset, with an event (at most one per EVENT_INTERVAL_MS while
//   refusing). The sandbox's nft table caps tracked TCP connections and UDP flows at twice that
//   (what the engine has closed but the guest has not, SYNs not yet accepted).
// - MATCHLOCK_NET_CONNECTION_RATE: new TCP connections, and new UDP flows, per second (default
//   100, bursts of twice that), enforced in the nft table.
import type { Socket } from "node:net";
import { BlockReason, type NetworkEvent, type NetworkEventSink } from "./events.js";
import { settings } from "../../settings/settings.js";

export interface ConnectionLimits {
  /** Open TCP connections per sandbox, counted by the engine. */
  open: number;
  /** New connections (TCP) and flows (UDP) per second, each. */
  perSecond: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = { open: 512, perSecond: 100 };
/** A guest hammering at its limit gets its refusals reported, not one event per refused connection. */
export const EVENT_INTERVAL_MS = 10_000;

/** The limits the environment sets; a clear error for a value that is not a positive integer. */
export function connectionLimits(env: NodeJS.ProcessEnv = process.env): ConnectionLimits {
  return {
    open: positive(settings.netMaxConnections.read(env), "MATCHLOCK_NET_MAX_CONNECTIONS", DEFAULT_CONNECTION_LIMITS.open),
    perSecond: positive(settings.netConnectionRate.read(env), "MATCHLOCK_NET_CONNECTION_RATE", DEFAULT_CONNECTION_LIMITS.perSecond),
  };
}

function positive(raw: string | undefined, name: string, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

/** Counts one sandbox's open guest connections across its listeners (proxy and port sniffer). */
export class ConnectionBudget {
  private open = 0;
  private lastReported = -Infinity;

  constructor(
    readonly limit: number,
    private readonly onEvent: NetworkEventSink,
    private readonly log: (line: string) => void,
  ) {}

  /** Takes a freshly accepted guest socket: true when it may go on, false when it was reset (over the limit). */
  readonly admit = (socket: Socket): boolean => {
    if (this.open >= this.limit) {
      if (Date.now() - this.lastReported >= EVENT_INTERVAL_MS) {
        this.lastReported = Date.now();
        this.log(`net: this sandbox has ${this.limit} connections open, its limit (MATCHLOCK_NET_MAX_CONNECTIONS); further ones are reset until some close`);
        const event: NetworkEvent = { method: "", url: "", host: "", status_code: 0, request_bytes: 0, response_bytes: 0, duration_ms: 0, blocked: true, block_reason: BlockReason.CONNECTIONS };
        this.onEvent(event);
      }
      socket.on("error", () => socket.destroy());
      socket.resetAndDestroy();
      return false;
    }
    this.open++;
    socket.once("close", () => this.open--);
    return true;
  };
}
