// Splices a guest's websocket to its upstream once the upgrade went through, scanning frames
// both ways when the sandbox has secrets: toward the server, a secret's placeholder becomes
// its value where the host may receive it, and any other secret's placeholder ends the
// connection before it is sent; toward the guest, the value turns back into the placeholder
// (as for HTTP responses).
import type { Socket } from "node:net";
import { pipeline, type Duplex } from "node:stream";
import type { NetworkPolicy } from "./policy.js";
import { ForbiddenBytesError } from "./stream-replace.js";
import { WebSocketFrameRewriter } from "./websocket-frames.js";

export interface RelayOutcome {
  /** A placeholder of `secret` was on its way to a host it may not go to; both sides are closed. */
  onBlocked(secret: string): void;
  onError(message: string): void;
}

export function relayWebSocket(
  policy: NetworkPolicy, host: string, guest: Socket, guestHead: Buffer, upstream: Socket, upstreamHead: Buffer, outcome: RelayOutcome,
): void {
  const close = () => {
    guest.destroy();
    upstream.destroy();
  };
  guest.on("close", close);
  upstream.on("close", close);
  if (!policy.secrets.length) {
    if (upstreamHead.length) guest.write(upstreamHead);
    if (guestHead.length) upstream.write(guestHead);
    guest.pipe(upstream).pipe(guest);
    guest.on("error", close);
    upstream.on("error", close);
    return;
  }
  const { usable, forbidden } = policy.secretScope(host);
  const toServer = new WebSocketFrameRewriter({
    mask: true,
    replacements: usable.map((s) => ({ from: Buffer.from(s.placeholder), to: Buffer.from(s.value) })),
    forbidden: forbidden.map((s) => ({ bytes: Buffer.from(s.placeholder), name: s.name })),
  });
  const toGuest = new WebSocketFrameRewriter({
    mask: false,
    replacements: usable.map((s) => ({ from: Buffer.from(s.value), to: Buffer.from(s.placeholder) })),
  });
  const failed = (err: Error | null | undefined) => {
    if (!err) return;
    if (err instanceof ForbiddenBytesError) outcome.onBlocked(err.forbidden);
    else if (err.message && !/ECONNRESET|EPIPE|premature close/i.test(err.message)) outcome.onError(err.message);
    close();
  };
  if (guestHead.length) toServer.write(guestHead);
  if (upstreamHead.length) toGuest.write(upstreamHead);
  pipeline(guest, toServer, upstream as Duplex, failed);
  pipeline(upstream, toGuest, guest as Duplex, failed);
}
