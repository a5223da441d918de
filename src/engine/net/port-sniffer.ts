// The listener behind every TCP port other than 80/443 of the synthetic range. It learns from
// connection tracking which address and port the guest dialled, maps the address back to the
// allowed name our DNS handed it out for, and looks at the first bytes: a TLS ClientHello goes
// to the intercepting proxy's TLS path, an HTTP request line to its HTTP path (both with the
// dialled port, so secrets work on e.g. :8080 and :8443 too), and anything else is relayed as
// raw bytes to the real host on that port (spec 4.2 "passthrough", never scanned). Protocols
// where the server speaks first (SMTP, MySQL) show no bytes: after SNIFF_WAIT_MS they are relayed.
import net, { type Socket } from "node:net";
import type { SyntheticAddresses } from "./dns-server.js";
import { BlockReason, type NetworkEvent, type NetworkEventSink } from "./events.js";
import { originalDestination, type Destination } from "./original-destination.js";
import type { NetworkPolicy } from "./policy.js";
import type { InterceptingProxy } from "./proxy.js";
import { pickAddress, UpstreamBlockedError, type UpstreamResolver } from "./upstream.js";

export const SNIFF_WAIT_MS = 500;
const CONNECT_TIMEOUT_MS = 30_000;
const HTTP_METHOD = /^(GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH|TRACE|CONNECT|PROPFIND|MKCOL|COPY|MOVE|LOCK|UNLOCK|PURGE) /;

export type Sniffed = "tls" | "http" | "raw" | "more";

/** What the first bytes of a client's stream are; "more" while they could still be an HTTP method. */
export function sniff(first: Buffer): Sniffed {
  if (first.length === 0) return "more";
  if (first[0] === 0x16) return "tls"; // TLS handshake record
  const text = first.subarray(0, 12).toString("latin1");
  if (HTTP_METHOD.test(text)) return "http";
  if (first.length < 12 && /^[A-Z]+$/.test(text)) return "more";
  return "raw";
}

export class PortSniffer {
  private readonly server: net.Server;
  private readonly sockets = new Set<Socket>();
  /** This sandbox's token in the engine-wide conntrack turns (src/engine/net/original-destination.ts). */
  private readonly lookupOwner = {};

  constructor(
    private readonly policy: NetworkPolicy,
    private readonly addresses: SyntheticAddresses,
    private readonly proxy: InterceptingProxy,
    private readonly onEvent: NetworkEventSink,
    private readonly log: (line: string) => void,
    private readonly resolver?: UpstreamResolver,
  ) {
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => void this.accept(s));
  }

  listen(host: string): Promise<number> {
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
    const name = dest && this.addresses.nameFor(dest.address);
    if (!dest || !name || !this.policy.isHostAllowed(name)) {
      this.event({ host: name ?? dest?.address ?? "(unknown)", url: dest ? `tcp://${dest.address}:${dest.port}` : "", blocked: true, block_reason: BlockReason.HOST });
      return void socket.resetAndDestroy();
    }
    const first = await firstBytes(socket, SNIFF_WAIT_MS);
    if (socket.destroyed) return;
    const kind = sniff(first);
    if (first.length) socket.unshift(first);
    if (kind === "tls") return this.proxy.acceptTls(socket, { port: dest.port, name });
    if (kind === "http") return this.proxy.acceptHttp(socket, { port: dest.port, name });
    await this.relay(socket, name, dest.port);
  }

  /** Raw bytes both ways between the guest and name:port, at an address the policy allows. */
  private async relay(guest: Socket, name: string, port: number): Promise<void> {
    const started = Date.now();
    const url = `tcp://${name}:${port}`;
    let address: string;
    try {
      address = await pickAddress(this.policy, name, this.resolver);
    } catch (err) {
      const blocked = err instanceof UpstreamBlockedError;
      this.event({ host: name, url, blocked, ...(blocked ? { block_reason: BlockReason.PRIVATE } : {}), duration_ms: Date.now() - started });
      if (!blocked) this.log(`tcp: ${url}: ${(err as Error).message}`);
      return void guest.resetAndDestroy();
    }
    const upstream = net.connect({ host: address, port, allowHalfOpen: true, timeout: CONNECT_TIMEOUT_MS });
    this.track(upstream);
    upstream.once("timeout", () => upstream.destroy(new Error("connect timed out")));
    upstream.once("connect", () => {
      upstream.setTimeout(0);
      // One event per relayed connection, when it opens (a raw stream has no request to report).
      this.event({ host: name, url, blocked: false, duration_ms: Date.now() - started });
      guest.pipe(upstream);
      upstream.pipe(guest);
      guest.resume();
    });
    let failed = false;
    upstream.on("error", (err) => {
      failed = true;
      this.log(`tcp: ${url}: ${err.message}`);
      guest.resetAndDestroy();
    });
    guest.on("error", () => upstream.destroy());
    guest.once("close", () => upstream.destroy());
    upstream.once("close", () => {
      if (!failed) guest.destroy();
    });
  }

  private event(e: Partial<NetworkEvent> & { host: string; blocked: boolean }): void {
    this.onEvent({ method: "", url: "", status_code: 0, request_bytes: 0, response_bytes: 0, duration_ms: 0, ...e });
  }
}

/** The client's first bytes, read without losing them (the caller unshifts); empty if it sent none in time. */
function firstBytes(socket: Socket, waitMs: number): Promise<Buffer> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    const done = () => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", done);
      socket.off("end", done);
      socket.pause();
      resolve(got);
    };
    const onData = (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (sniff(got) !== "more") done();
    };
    const timer = setTimeout(done, waitMs);
    socket.on("data", onData);
    socket.once("close", done);
    socket.once("end", done);
    socket.resume();
  });
}
