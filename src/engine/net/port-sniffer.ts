// The listener behind every TCP port other than 80/443 of the synthetic range, and every port of
// an address allowed_hosts names literally. It learns from connection tracking which address and
// port the guest dialled and maps the address back to the allowed name our DNS handed it out for
// (or takes the literal address as the name). It then connects to the real host on that port at once
// (the name checked, the address picked by the policy) and lets whichever side speaks first
// decide, with no time limit: a client that speaks first is sniffed (first-bytes.ts: a TLS
// ClientHello goes to the intercepting proxy's TLS path, anything an HTTP server could read as a
// request to its HTTP path, both with the dialled port, so secrets work on e.g. :8080 and :8443
// too; the early upstream connection is then closed unused), bytes that cannot be HTTP or TLS,
// or any byte from the server first (SMTP, SSH banners), make it a raw relay to that upstream
// (spec 4.2 "passthrough", never scanned). A timeout would decide wrongly for a slow client (a
// TLS context built after connecting under TCG, a request line sent a byte at a time): its
// request would go out unchecked.
import net, { type Socket } from "node:net";
import type { SyntheticAddresses } from "./dns-server.js";
import { BlockReason, type NetworkEvent, type NetworkEventSink } from "./events.js";
import { originalDestination, type Destination } from "./original-destination.js";
import type { NetworkPolicy } from "./policy.js";
import type { GuestConnectionGate, InterceptingProxy } from "./proxy.js";
import { isHttpResponse, sniff, sniffAtEnd, type Sniffed } from "./first-bytes.js";
import { RedactStream, redactions } from "./redact-stream.js";
import { pickAddress, UpstreamBlockedError, type UpstreamResolver } from "./upstream.js";

const CONNECT_TIMEOUT_MS = 30_000;

export class PortSniffer {
  private readonly server: net.Server;
  private readonly sockets = new Set<Socket>();
  /** This sandbox's token in the engine-wide conntrack turns (src/engine/net/original-destination.ts). */
  private readonly lookupOwner = {};

  private gate: GuestConnectionGate = () => true;

  constructor(
    private readonly policy: NetworkPolicy,
    private readonly addresses: SyntheticAddresses,
    private readonly proxy: InterceptingProxy,
    private readonly onEvent: NetworkEventSink,
    private readonly log: (line: string) => void,
    private readonly resolver?: UpstreamResolver,
  ) {
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => {
      if (this.gate(s)) void this.accept(s);
    });
  }

  /** Listens on an ephemeral port of `host`; `gate` sees each guest connection first (the sandbox's connection limit). */
  listen(host: string, gate: GuestConnectionGate = () => true): Promise<number> {
    this.gate = gate;
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(0, host, () => {
        this.server.off("error", reject);
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  close(): void {
    this.server.close();
    for (const s of this.sockets) s.destroy();
  }

  private track(s: Socket): void {
    this.sockets.add(s);
    s.once("close", () => this.sockets.delete(s));
  }

  private async accept(socket: Socket): Promise<void> {
    this.track(socket);
    socket.on("error", () => socket.destroy());
    let dest: Destination | undefined;
    try {
      dest = await originalDestination(socket, { owner: this.lookupOwner });
    } catch (err) {
      this.log(`tcp: cannot tell where a connection was headed: ${(err as Error).message}`);
    }
    const name = dest && (this.addresses.nameFor(dest.address) ?? (this.policy.literalAddresses.includes(dest.address) ? dest.address : undefined));
    if (!dest || !name || !this.policy.isHostAllowed(name)) {
      this.event({ host: name ?? dest?.address ?? "(unknown)", url: dest ? `tcp://${dest.address}:${dest.port}` : "", blocked: true, block_reason: BlockReason.HOST });
      return void socket.resetAndDestroy();
    }
    const url = `tcp://${name}:${dest.port}`;
    const started = Date.now();
    let address: string;
    try {
      address = await pickAddress(this.policy, name, this.resolver);
    } catch (err) {
      const blocked = err instanceof UpstreamBlockedError;
      this.event({ host: name, url, blocked, ...(blocked ? { block_reason: err.reason } : {}), duration_ms: Date.now() - started });
      if (!blocked) this.log(`tcp: ${url}: ${(err as Error).message}`);
      return void socket.resetAndDestroy();
    }
    if (socket.destroyed) return;
    const upstream = net.connect({ host: address, port: dest.port, allowHalfOpen: true, timeout: CONNECT_TIMEOUT_MS });
    this.track(upstream);
    upstream.once("timeout", () => upstream.destroy(new Error("connect timed out")));
    // The relay's event reports the upstream's connect time, not how long the guest took to speak.
    let connectMs: number | undefined;
    upstream.once("connect", () => {
      upstream.setTimeout(0);
      connectMs = Date.now() - started;
    });
    // Before and after the decision alike, a failed upstream resets the guest, unless the
    // proxy has taken the guest over and this connection was dropped unused.
    let dropped = false;
    upstream.on("error", (err) => {
      if (dropped) return;
      this.log(`tcp: ${url}: ${err.message}`);
      socket.resetAndDestroy();
    });
    const first = await firstSpeaker(socket, upstream);
    if (first.side === "gone") {
      if (!upstream.connecting) this.log(`tcp: ${url}: the guest left before either side spoke; its upstream connection closed unused`);
      upstream.destroy();
      if (!socket.destroyed) socket.resetAndDestroy();
      return;
    }
    if (first.side === "server" && isHttpResponse(first.server)) {
      // An HTTP server that answers before any request (a 408 on an idle connection): relayed raw,
      // the guest's next request would reach it unchecked.
      this.log(`tcp: ${url}: the server sent an HTTP response before the guest sent a request; connection closed`);
      upstream.destroy();
      return void socket.resetAndDestroy();
    }
    if (first.side === "client" && first.kind !== "raw") {
      dropped = true;
      upstream.destroy(); // never written to: the proxy makes its own, checked connection
      socket.unshift(first.client);
      const facts = { port: dest.port, name };
      return first.kind === "tls" ? this.proxy.acceptTls(socket, facts) : this.proxy.acceptHttp(socket, facts);
    }
    this.relay(socket, upstream, first, name, url, () => connectMs ?? Date.now() - started);
  }

  /** Raw bytes both ways between the guest and its upstream, starting with what each already sent. */
  private relay(guest: Socket, upstream: Socket, head: { client: Buffer; server: Buffer }, name: string, url: string, connectMs: () => number): void {
    // One event per relayed connection, when it opens (a raw stream has no request to report).
    const opened = () => this.event({ host: name, url, blocked: false, duration_ms: connectMs() });
    if (upstream.connecting) upstream.once("connect", opened);
    else opened();
    // What a secret's host sends is scanned here too: it may hand back a value stored there
    // over HTTPS. Only verbatim copies can be caught (an encrypted protocol such as SSH cannot).
    const secrets = this.policy.boundTo(name);
    const toGuest = secrets.length ? new RedactStream(redactions(secrets)) : guest;
    if (toGuest !== guest) toGuest.pipe(guest);
    // Written, not unshifted: a side may already have ended, and pipe() still forwards that end.
    if (head.client.length) upstream.write(head.client);
    if (head.server.length) toGuest.write(head.server);
    guest.pipe(upstream);
    upstream.pipe(toGuest);
    guest.on("error", () => upstream.destroy());
    guest.once("close", () => upstream.destroy());
    upstream.once("close", (hadError) => {
      if (!hadError) guest.destroy();
    });
  }

  private event(e: Partial<NetworkEvent> & { host: string; blocked: boolean }): void {
    this.onEvent({ method: "", url: "", status_code: 0, request_bytes: 0, response_bytes: 0, duration_ms: 0, ...e });
  }
}

export type FirstSpeaker =
  | { side: "client"; kind: Sniffed; client: Buffer; server: Buffer }
  | { side: "server"; client: Buffer; server: Buffer }
  | { side: "gone" };

/**
 * Waits, however long, until the guest's bytes sniff as something other than "more", the guest
 * half-closes (sniffAtEnd), or the upstream sends first (then it is a raw relay with what the
 * guest sent so far). An upstream that only ends (an idle server closing) decides nothing: a slow
 * TLS client must still reach the proxy. Both sockets are left paused with their listeners
 * removed; the bytes read are returned, not lost.
 */
export function firstSpeaker(guest: Socket, upstream: Socket): Promise<FirstSpeaker> {
  return new Promise((resolve) => {
    let client: Buffer = Buffer.alloc(0);
    let server: Buffer = Buffer.alloc(0);
    const finish = (result: FirstSpeaker) => {
      guest.off("data", onGuestData).off("end", onGuestEnd).off("close", onGone);
      upstream.off("data", onServerData).off("close", onGone);
      guest.pause();
      upstream.pause();
      resolve(result);
    };
    const onGuestData = (d: Buffer) => {
      client = Buffer.concat([client, d]);
      const kind = sniff(client);
      if (kind !== "more") finish({ side: "client", kind, client, server });
    };
    const onGuestEnd = () => finish({ side: "client", kind: sniffAtEnd(client), client, server });
    const onServerData = (d: Buffer) => {
      server = d;
      finish({ side: "server", client, server });
    };
    const onGone = () => finish({ side: "gone" });
    guest.on("data", onGuestData).once("end", onGuestEnd).once("close", onGone);
    upstream.on("data", onServerData).once("close", onGone);
    guest.resume();
  });
}
