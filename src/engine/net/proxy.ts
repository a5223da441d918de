// The transparent HTTP/1.1 proxy behind the sandbox's ports 80 and 443, and behind any other
// port where the port sniffer (port-sniffer.ts) recognised HTTP or TLS. TLS is
// terminated with a leaf from the sandbox's CA for the client's SNI; both then share one
// request path: policy check on the host name, secret placeholder check and substitution
// (headers and query string only), and a fresh upstream request to an address the engine
// resolved and checked itself. Redirects are passed back, never followed.
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import net, { type Socket } from "node:net";
import tls, { type TLSSocket } from "node:tls";
import { BlockReason, type NetworkEvent, type NetworkEventSink } from "./events.js";
import type { MitmCa } from "./mitm-ca.js";
import { normalizeHost, type NetworkPolicy } from "./policy.js";
import { redact, RedactStream, type Redaction } from "./redact-stream.js";
import { pickAddress, upstreamRoots, UpstreamBlockedError, type UpstreamResolver } from "./upstream.js";
import { relayWebSocket } from "./websocket-relay.js";

const HOP_BY_HOP = new Set([
  "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
  "te", "trailer", "transfer-encoding", "upgrade",
]);
const BLOCKED_BODY = "Blocked by policy";
/** The same refusal written straight to a socket that has no HTTP response object (upgrades). */
const BLOCKED_RAW_REPLY = `HTTP/1.1 403 Forbidden\r\nContent-Length: ${BLOCKED_BODY.length}\r\nConnection: close\r\n\r\n${BLOCKED_BODY}`;
const UPSTREAM_TIMEOUT_MS = 30_000;
const HANDSHAKE_TIMEOUT_MS = 15_000;

type Scheme = "http" | "https";

interface Target {
  scheme: Scheme;
  host: string;
  port: number;
}

/** What the listener learnt about a guest connection before HTTP parsing starts. */
export interface ConnectionFacts {
  /** The port the guest dialled (80/443 unless it came through the port sniffer). */
  port: number;
  /** The name whose synthetic address the guest dialled, when known: the request must be for it. */
  name?: string | undefined;
  /** The TLS client's SNI, checked against the policy. */
  sni?: string;
}
/** Sees each accepted guest connection first: false when it has already refused (reset) it. */
export type GuestConnectionGate = (socket: Socket) => boolean;
const FACTS = Symbol("matchlock connection facts");
type Annotated = Socket & { [FACTS]?: ConnectionFacts };
const DEFAULT_PORT: Record<Scheme, number> = { http: 80, https: 443 };

export class InterceptingProxy {
  private readonly httpFront: http.Server;
  private readonly httpsFront: http.Server;
  private readonly tlsListener: net.Server;
  private gate: GuestConnectionGate = () => true;
  private readonly sockets = new Set<Socket>();
  private readonly agents: Record<Scheme, http.Agent>;

  constructor(
    private readonly policy: NetworkPolicy,
    private readonly ca: MitmCa,
    private readonly onEvent: NetworkEventSink,
    private readonly log: (line: string) => void,
    private readonly resolver?: UpstreamResolver,
  ) {
    this.httpFront = this.front("http");
    this.httpsFront = this.front("https");
    // Each guest connection passes the gate once, where it was accepted: the HTTP front's own
    // (port 80; one it refuses is already reset when the HTTP server sees it), not those the TLS
    // path and the port sniffer hand to it.
    this.httpFront.prependListener("connection", (s: Socket & { server?: unknown }) => {
      if (s.server === this.httpFront) this.gate(s);
    });
    this.tlsListener = net.createServer((raw) => this.gate(raw) && this.acceptTls(raw, { port: 443 }));
    this.agents = {
      http: new http.Agent({ keepAlive: true, maxFreeSockets: 16 }),
      https: new https.Agent({ keepAlive: true, maxFreeSockets: 16, ca: upstreamRoots() }),
    };
  }

  /** Listens on ephemeral ports of `host`; the firewall DNATs the guest's 80/443 to them. `gate` sees each connection first. */
  async listen(host: string, gate: GuestConnectionGate = () => true): Promise<{ http: number; https: number }> {
    this.gate = gate;
    return { http: await listenOn(this.httpFront, host), https: await listenOn(this.tlsListener, host) };
  }

  close(): void {
    this.httpFront.close();
    this.tlsListener.close();
    for (const s of this.sockets) s.destroy();
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  private track(s: Socket): void {
    this.sockets.add(s);
    s.once("close", () => this.sockets.delete(s));
  }

  private front(scheme: Scheme): http.Server {
    const server = http.createServer({ requireHostHeader: false }, (req, res) => void this.handle(scheme, req, res));
    server.on("connection", (s: Socket) => this.track(s));
    server.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) => void this.upgrade(scheme, req, socket, head));
    server.on("clientError", (_err, socket: Socket) => socket.destroy());
    return server;
  }

  /** A plain HTTP connection the port sniffer recognised (its first bytes are unshifted back). */
  acceptHttp(socket: Socket, facts: ConnectionFacts): void {
    (socket as Annotated)[FACTS] = facts;
    this.httpFront.emit("connection", socket);
    socket.resume(); // the sniffer paused it; the HTTP server reads the unshifted bytes first
  }

  /** TLS with the guest first (spec 4.4), then the policy check on the SNI name. */
  acceptTls(raw: Socket, facts: ConnectionFacts): void {
    this.track(raw);
    raw.on("error", () => raw.destroy());
    raw.setTimeout(HANDSHAKE_TIMEOUT_MS, () => raw.destroy());
    const socket = new tls.TLSSocket(raw, {
      isServer: true,
      ALPNProtocols: ["http/1.1"],
      SNICallback: (name, cb) => {
        this.ca.contextFor(normalizeHost(name)).then((ctx) => cb(null, ctx), (err: Error) => cb(err));
      },
    });
    socket.on("error", () => socket.destroy());
    socket.once("secure", () => {
      raw.setTimeout(0);
      const sni = (socket as TLSSocket & { servername?: string | false }).servername;
      const host = sni ? normalizeHost(sni) : "";
      // Through the sniffer the dialled name is known: the SNI must be that name.
      if (!host || !this.policy.isHostAllowed(host) || (facts.name !== undefined && host !== facts.name)) {
        this.event({ method: "", url: "", host: host || "(no SNI)", blocked: true, block_reason: BlockReason.HOST });
        socket.destroy();
        return;
      }
      (socket as Annotated)[FACTS] = { ...facts, sni: host };
      this.httpsFront.emit("connection", socket);
    });
  }

  /** Checks policy and secrets; returns the upstream target and the rewritten request, or answers 403 itself. */
  private admit(
    scheme: Scheme, req: IncomingMessage,
  ): { target: Target; path: string; headers: Array<[string, string]>; redactions: Redaction[] } | { blocked: string } {
    const facts = (req.socket as Annotated)[FACTS];
    const port = facts?.port ?? DEFAULT_PORT[scheme];
    const hostHeader = normalizeHost(req.headers.host ?? "");
    const host = scheme === "https" ? facts!.sni! : hostHeader || facts?.name || "";
    // Inside TLS the Host header must name the SNI host: no fronting one allowed name with another.
    if (!host || (scheme === "https" && hostHeader && hostHeader !== host)) return { blocked: BlockReason.HOST };
    // Nor, where the dialled name is known, a Host header naming another one.
    if (facts?.name !== undefined && host !== facts.name) return { blocked: BlockReason.HOST };
    if (!this.policy.isHostAllowed(host)) return { blocked: BlockReason.HOST };
    let url = req.url ?? "/";
    if (!url.startsWith("/")) {
      // Absolute form ("GET http://x/ HTTP/1.1"): only for the Host it names, sent on in origin form.
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        return { blocked: BlockReason.HOST };
      }
      if (normalizeHost(parsed.host) !== host) return { blocked: BlockReason.HOST };
      url = parsed.pathname + parsed.search;
    }
    const rawHeaders: Array<[string, string]> = [];
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) rawHeaders.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!]);
    const decision = this.policy.secretsFor(host, [url, ...rawHeaders.map(([, v]) => v)]);
    if (!decision.ok) return { blocked: BlockReason.SECRET };
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q) + "?" + decision.apply(url.slice(q + 1));
    const redactions = decision.used.map((s) => ({ value: Buffer.from(s.value), placeholder: Buffer.from(s.placeholder) }));
    const headers = rawHeaders
      // With a secret in the request, the response must be readable to redact echoes of it.
      .filter(([k]) => !HOP_BY_HOP.has(k.toLowerCase()) && !(redactions.length && k.toLowerCase() === "accept-encoding"))
      .map(([k, v]) => [k, decision.apply(v)] as [string, string]);
    if (redactions.length) headers.push(["Accept-Encoding", "identity"]);
    return { target: { scheme, host, port }, path, headers, redactions };
  }

  private async handle(scheme: Scheme, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = Date.now();
    const base = { method: req.method ?? "", url: req.url ?? "", request_bytes: Number(req.headers["content-length"]) || 0 };
    const admitted = this.admit(scheme, req);
    if ("blocked" in admitted) {
      this.event({ ...base, host: normalizeHost(req.headers.host ?? ""), status_code: 403, blocked: true, block_reason: admitted.blocked, duration_ms: Date.now() - started });
      req.resume();
      return forbid(res);
    }
    const { target, path, headers, redactions } = admitted;
    const fullUrl = urlOf(target, path);
    let address: string;
    try {
      address = await pickAddress(this.policy, target.host, this.resolver);
    } catch (err) {
      const blocked = err instanceof UpstreamBlockedError;
      this.event({ ...base, url: fullUrl, host: target.host, status_code: blocked ? 403 : 502, blocked, ...(blocked ? { block_reason: err.reason } : {}), duration_ms: Date.now() - started });
      req.resume();
      return blocked ? forbid(res) : fail(res);
    }
    const upstream = this.request(target, address, req.method ?? "GET", path, headers);
    let responded = false;
    upstream.on("response", (up) => {
      responded = true;
      const out: Array<[string, string]> = [];
      for (let i = 0; i + 1 < up.rawHeaders.length; i += 2) {
        const name = up.rawHeaders[i]!;
        if (HOP_BY_HOP.has(name.toLowerCase())) continue;
        // Redaction can change the body's length: then it goes chunked.
        if (redactions.length && name.toLowerCase() === "content-length") continue;
        out.push([name, redactHeader(up.rawHeaders[i + 1]!, redactions)]);
      }
      res.writeHead(up.statusCode ?? 502, up.statusMessage, out.flat());
      res.flushHeaders(); // streaming bodies (SSE) must not wait for the first chunk to be buffered
      if (redactions.length) up.pipe(new RedactStream(redactions)).pipe(res);
      else up.pipe(res);
      up.on("error", () => res.destroy());
      res.once("close", () => {
        if (!up.complete) up.destroy();
        this.event({ ...base, url: fullUrl, host: target.host, status_code: up.statusCode ?? 0, response_bytes: Number(up.headers["content-length"]) || 0, blocked: false, duration_ms: Date.now() - started });
      });
    });
    // No answer from upstream in time: give up (once a response has started, it may idle, e.g. SSE).
    upstream.once("timeout", () => {
      if (!responded) upstream.destroy(new Error("upstream did not answer in time"));
    });
    upstream.on("error", (err) => {
      this.log(`proxy: ${fullUrl}: ${err.message}`);
      if (!res.headersSent) fail(res);
      else res.destroy();
    });
    req.pipe(upstream);
    req.on("error", () => upstream.destroy());
  }

  private request(
    target: Target, address: string, method: string, path: string, headers: Array<[string, string]>, agent: http.Agent | false = this.agents[target.scheme],
  ): http.ClientRequest {
    const mod = target.scheme === "https" ? https : http;
    return mod.request({
      host: target.host,
      port: target.port,
      method,
      path,
      headers: headers.flat() as unknown as http.OutgoingHttpHeaders,
      setHost: false,
      agent,
      servername: target.host,
      ca: upstreamRoots(), // also for agent-less (upgrade) requests
      timeout: UPSTREAM_TIMEOUT_MS,
      // Connect to the address we checked, not whatever a second resolution would say.
      lookup: (_h, opts, cb) => {
        const family = net.isIP(address);
        if ((opts as { all?: boolean }).all) (cb as unknown as (e: null, a: Array<{ address: string; family: number }>) => void)(null, [{ address, family }]);
        else cb(null, address, family);
      },
    } as https.RequestOptions);
  }

  /** Upgrade (websocket): same checks, then the two sockets are spliced, frames scanned for secrets (websocket-relay.ts). */
  private async upgrade(scheme: Scheme, req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    const started = Date.now();
    const base = { method: req.method ?? "", url: req.url ?? "", request_bytes: 0, response_bytes: 0 };
    socket.on("error", () => socket.destroy());
    const admitted = this.admit(scheme, req);
    if ("blocked" in admitted) {
      this.event({ ...base, host: normalizeHost(req.headers.host ?? ""), status_code: 403, blocked: true, block_reason: admitted.blocked, duration_ms: Date.now() - started });
      socket.end(BLOCKED_RAW_REPLY);
      return;
    }
    const { target, path } = admitted;
    let address: string;
    try {
      address = await pickAddress(this.policy, target.host, this.resolver);
    } catch (err) {
      if (err instanceof UpstreamBlockedError) this.event({ ...base, url: urlOf(target, path), host: target.host, status_code: 403, blocked: true, block_reason: err.reason, duration_ms: Date.now() - started });
      socket.end(BLOCKED_RAW_REPLY);
      return;
    }
    const websocket = /websocket/i.test(String(req.headers.upgrade ?? ""));
    const { redactions } = admitted;
    if (!websocket && redactions.length) {
      // Another protocol (h2c, ...) would carry the substituted secret into a relay nobody scans
      // for echoes of it: a request with a secret may upgrade to websocket only.
      this.event({ ...base, host: target.host, status_code: 403, blocked: true, block_reason: BlockReason.SECRET, duration_ms: Date.now() - started });
      socket.end(BLOCKED_RAW_REPLY);
      return;
    }
    // Compressed frames (permessage-deflate) could not be scanned: no extension is offered upstream.
    const offered = websocket && this.policy.secrets.length ? admitted.headers.filter(([k]) => k.toLowerCase() !== "sec-websocket-extensions") : admitted.headers;
    const headers = [...offered, ["Connection", "Upgrade"] as [string, string], ["Upgrade", String(req.headers.upgrade ?? "")] as [string, string]];
    const url = urlOf(target, path);
    const up = this.request(target, address, req.method ?? "GET", path, headers, false);
    up.on("upgrade", (upRes, upSocket, upHead) => {
      const lines = [`HTTP/1.1 ${upRes.statusCode} ${upRes.statusMessage ?? ""}`];
      // Headers may echo what the request carried (a placeholder in Sec-WebSocket-Protocol): redact.
      for (let i = 0; i + 1 < upRes.rawHeaders.length; i += 2) lines.push(`${upRes.rawHeaders[i]}: ${redactHeader(upRes.rawHeaders[i + 1]!, redactions)}`);
      socket.write(lines.join("\r\n") + "\r\n\r\n");
      this.event({ ...base, url, host: target.host, status_code: upRes.statusCode ?? 0, blocked: false, duration_ms: Date.now() - started });
      if (!websocket) {
        // Another protocol: relayed like raw TCP to an allowed name, unscanned.
        if (upHead.length) socket.write(upHead);
        if (head.length) upSocket.write(head);
        upSocket.pipe(socket).pipe(upSocket);
        upSocket.on("error", () => socket.destroy());
        socket.on("close", () => upSocket.destroy());
        upSocket.on("close", () => socket.destroy());
        return;
      }
      relayWebSocket(this.policy, target.host, socket, head, upSocket, upHead, {
        onBlocked: () => this.event({ ...base, method: "WEBSOCKET", url, host: target.host, blocked: true, block_reason: BlockReason.SECRET, duration_ms: Date.now() - started }),
        onError: (message) => this.log(`proxy: websocket ${url}: ${message}`),
      });
    });
    up.on("response", (res) => {
      // The server refused the upgrade: pass its answer on and close.
      // Its body may echo the request's headers, secrets substituted: redact like any response.
      socket.write(`HTTP/1.1 ${res.statusCode} ${res.statusMessage ?? ""}\r\nConnection: close\r\n\r\n`);
      (redactions.length ? res.pipe(new RedactStream(redactions)) : res).pipe(socket);
    });
    up.on("error", () => socket.destroy());
    up.end();
  }

  private event(e: Partial<NetworkEvent> & { host: string; blocked: boolean }): void {
    this.onEvent({
      method: "", url: "", status_code: 0, request_bytes: 0, response_bytes: 0, duration_ms: 0, ...e,
    });
  }
}

function urlOf(t: Target, path: string): string {
  return `${t.scheme}://${t.host}${t.port === DEFAULT_PORT[t.scheme] ? "" : `:${t.port}`}${path}`;
}

function forbid(res: ServerResponse): void {
  res.writeHead(403, { "Content-Type": "text/plain", "Content-Length": BLOCKED_BODY.length, Connection: "close" });
  res.end(BLOCKED_BODY);
}

function fail(res: ServerResponse): void {
  const body = "Failed to connect";
  res.writeHead(502, { "Content-Type": "text/plain", "Content-Length": body.length, Connection: "close" });
  res.end(body);
}

function listenOn(server: net.Server, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => {
      server.off("error", reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

/** A response header value with every echo of a secret the request carried turned back into its placeholder. */
function redactHeader(value: string, redactions: Redaction[]): string {
  return redactions.length ? redact(Buffer.from(value, "latin1"), redactions).toString("latin1") : value;
}
