// Splices a guest's websocket to its upstream once the upgrade went through, scanning frames
// both ways when the sandbox has secrets: toward the server, a secret's placeholder becomes
// its value where the host may receive it (over plain HTTP only if the secret allows that), and
// any other secret's placeholder ends the connection before it is sent; toward the guest, the
// value of every secret bound to the host turns back into the placeholder (as for HTTP answers).
import type { Socket } from "node:net";
import { pipeline, type Duplex } from "node:stream";
import type { SecretScope } from "./policy.js";
import { redactions } from "./redact-stream.js";
import { ForbiddenBytesError } from "./stream-replace.js";
import { WebSocketFrameRewriter } from "./websocket-frames.js";

export interface RelayOutcome {
  /** A placeholder was on its way where it may not go, for `reason`; both sides are closed. */
  onBlocked(reason: string): void;
  onError(message: string): void;
}

/** `scope` undefined: the sandbox has no secrets, and bytes are spliced unread. */
export function relayWebSocket(
  scope: SecretScope | undefined, guest: Socket, guestHead: Buffer, upstream: Socket, upstreamHead: Buffer, outcome: RelayOutcome,
): void {
  const close = () => {
    guest.destroy();
    upstream.destroy();
  };
  guest.on("close", close);
  upstream.on("close", close);
  if (!scope) {
    if (upstreamHead.length) guest.write(upstreamHead);
    if (guestHead.length) upstream.write(guestHead);
    guest.pipe(upstream).pipe(guest);
    guest.on("error", close);
    upstream.on("error", close);
    return;
  }
  const toServer = new WebSocketFrameRewriter({
    mask: true,
    replacements: scope.usable.map((s) => ({ from: Buffer.from(s.placeholder), to: Buffer.from(s.value) })),
    // Named by the reason: that is all the event says.
    forbidden: scope.forbidden.map((f) => ({ bytes: Buffer.from(f.secret.placeholder), name: f.reason })),
  });
  const toGuest = new WebSocketFrameRewriter({ mask: false, replacements: redactions(scope.redacted) });
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
