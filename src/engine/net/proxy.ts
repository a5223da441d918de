// The transparent HTTP/1.1 proxy behind the sandbox's ports 80 and 443, and behind any other
// port where the port sniffer (port-sniffer.ts) recognised HTTP or TLS. TLS is
// terminated with a leaf from the sandbox's CA for the client's SNI; both then share one
// request path: framing check (request-framing.ts), policy check on the host name, secret
// placeholder check and substitution (headers and query string only; over plain HTTP only for
// secrets allowed there), and a fresh upstream request, its body framed explicitly, to an
// address the engine resolved and checked itself. Everything a secret's host answers is scanned
// for its secrets' values (guest-answer.ts). Redirects are passed back, never followed. The
// interception rules (interception/) run on the request before the secrets and the policy check
// of the host it finally goes to, and on the answer's head after its scan.
import http, { STATUS_CODES, type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import net, { type Socket } from "node:net";
import { pipeline, type Readable } from "node:stream";
import tls, { type TLSSocket } from "node:tls";
import { BlockReason, type NetworkEvent, type NetworkEventSink } from "./events.js";
import { guestAnswer } from "./guest-answer.js";
import { BodyRewrite, replaceInBuffer, SseDataRewrite } from "./interception/body-rewrite.js";
import { PROXY_OWNED_HEADERS } from "./interception/config.js";
import { hostOf, Interceptor, type RequestView, type ResponseView } from "./interception/interceptor.js";
import type { MitmCa } from "./mitm-ca.js";
import { normalizeHost, type NetworkPolicy, type SecretScope } from "./policy.js";
import { redactions as redactionsOf, RedactStream, redactText } from "./redact-stream.js";
import { parserErrorReply, requestFraming } from "./request-framing.js";
import { StreamReplacer, type Replacement } from "./stream-replace.js";
import { pickAddress, upstreamRoots, UpstreamBlockedError, type UpstreamResolver } from "./upstream.js";
import { relayWebSocket } from "./websocket-relay.js";

const BLOCKED_BODY = "Blocked by policy";
/**
 * Request headers not sent to a secret's host: a byte range could cut the secret's value into
 * pieces that no longer match it, and a compressed answer must be decoded before it is scanned.
 */
const UNSCANNABLE_ASKS = new Set(["range", "if-range", "accept-encoding"]);
const UPSTREAM_TIMEOUT_MS = 30_000;
const HANDSHAKE_TIMEOUT_MS = 15_000;

type Scheme = "http" | "https";

interface Target {
  scheme: Scheme;
  host: string;
  port: number;
}

/** A request the proxy passes on. */
interface Admitted {
  target: Target;
  /** Origin-form path with secrets substituted in the query: what goes upstream. */
  path: string;
  /** The URL with placeholders left in: what events and logs show. */
  shownUrl: string;
  headers: Array<[string, string]>;
  /** Secret values to turn back into placeholders in whatever the host answers. */
  redactions: Replacement[];
  scope: SecretScope;
  /** The request as the interception rules left it (placeholders in): what the `after` rules see. */
  view: RequestView;
  /** An `after` rule may rewrite the answer's body: it was asked for uncompressed, and is decoded. */
  rewriteBody: boolean;
}

/** A request the proxy answers itself: 400 (framing) or 403 (policy). */
interface Refusal {
  status: number;
  reason: string;
  message: string;
  /** The interception rule that blocked the request. */
  rule?: string;
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
    private readonly interceptor: Interceptor = new Interceptor(undefined, { secretIn: () => undefined, log }),
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
    // The strict parser whatever flags Node runs with: lenient parsing is how a second request
    // hides in the first (request-framing.ts).
    const server = http.createServer({ requireHostHeader: false, insecureHTTPParser: false }, (req, res) => void this.handle(scheme, req, res));
    server.on("connection", (s: Socket) => this.track(s));
    server.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) => void this.upgrade(scheme, req, socket, head));
    server.on("clientError", (err: Error, socket: Socket) => this.refuseUnparsed(err, socket));
    server.on("connect", (req: IncomingMessage, socket: Socket) => this.refuseTunnel(req, socket));
    return server;
  }

  /** Bytes Node's parser refused: the guest hears why (400), and the connection ends. */
  private refuseUnparsed(err: Error, socket: Socket): void {
    const reply = parserErrorReply(err);
    // A pipelined request's error while an earlier answer is still being written: a reply now
    // would land inside that answer's body (Node's own default handler checks the same).
    const answering = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage?.headersSent === true;
    if (!reply || !socket.writable || answering) return void socket.destroy();
    const facts = (socket as Annotated)[FACTS];
    // A request that stalled half-sent (408) is no attempt to hide anything: no event for it.
    if (reply.status !== 408) this.event({ host: facts?.sni ?? facts?.name ?? "(unparsed request)", status_code: reply.status, blocked: true, block_reason: BlockReason.MALFORMED });
    socket.end(rawReply({ status: reply.status, message: `Bad request: ${reply.message}` }));
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
    // A client that dialled an address (allowed literally) sends no SNI (RFC 6066): it gets a
    // leaf for that address. The socket stays paused (the sniffer's) until the TLS layer is on it.
    if (facts.name !== undefined && net.isIP(facts.name)) {
      this.ca.contextFor(facts.name).then((ctx) => this.handshake(raw, facts, ctx), () => raw.destroy());
    } else {
      this.handshake(raw, facts);
    }
  }

  private handshake(raw: Socket, facts: ConnectionFacts, addressContext?: tls.SecureContext): void {
    if (raw.destroyed) return;
    const socket = new tls.TLSSocket(raw, {
      isServer: true,
      ALPNProtocols: ["http/1.1"],
      ...(addressContext ? { secureContext: addressContext } : {}),
      SNICallback: (name, cb) => {
        // Checked before a leaf is issued: a guest must not make the engine sign (and keep) a
        // certificate for every name it can think of.
        const host = normalizeHost(name);
        if (!this.tlsNameAllowed(host, facts)) {
          this.event({ method: "", url: "", host, blocked: true, block_reason: BlockReason.HOST });
          cb(new Error(`TLS name ${host} is not allowed`));
          return;
        }
        this.ca.contextFor(host).then((ctx) => cb(null, ctx), (err: Error) => cb(err));
      },
    });
    socket.on("error", () => socket.destroy());
    socket.once("secure", () => {
      raw.setTimeout(0);
      const sni = (socket as TLSSocket & { servername?: string | false }).servername;
      const host = sni ? normalizeHost(sni) : addressContext ? facts.name! : "";
      // Again at the end of the handshake: the allow-list may have changed meanwhile.
      if (!this.tlsNameAllowed(host, facts)) {
        this.event({ method: "", url: "", host: host || "(no SNI)", blocked: true, block_reason: BlockReason.HOST });
        socket.destroy();
        return;
      }
      (socket as Annotated)[FACTS] = { ...facts, sni: host };
      this.httpsFront.emit("connection", socket);
    });
  }

  /** Allowed by the policy and, where the dialled name is known (through the sniffer), that very name. */
  private tlsNameAllowed(host: string, facts: ConnectionFacts): boolean {
    return host !== "" && this.policy.isHostAllowed(host) && (facts.name === undefined || host === facts.name);
  }

  /** A CONNECT request: refused with a 403 and an event (the proxy is transparent, never a tunnel). */
  private refuseTunnel(req: IncomingMessage, socket: Socket): void {
    socket.on("error", () => socket.destroy());
    const host = normalizeHost((req.url ?? "").replace(/:\d+$/, ""));
    this.event({ method: "CONNECT", url: req.url ?? "", host: host || "(none)", status_code: 403, blocked: true, block_reason: BlockReason.TUNNEL });
    socket.end(rawReply({ status: 403, message: BLOCKED_BODY }));
  }

  /**
   * Checks framing, policy and secrets; returns the upstream target and the rewritten request,
   * or why it is refused (the caller answers).
   */
  private async admit(scheme: Scheme, req: IncomingMessage, upgrade: boolean): Promise<Admitted | Refusal> {
    const framing = requestFraming(req, upgrade);
    if ("refused" in framing) return { status: 400, reason: BlockReason.MALFORMED, message: `Bad request: ${framing.refused}` };
    const blocked = (reason: string): Refusal => ({ status: 403, reason, message: BLOCKED_BODY });
    const facts = (req.socket as Annotated)[FACTS];
    const port = facts?.port ?? DEFAULT_PORT[scheme];
    const hostHeader = normalizeHost(req.headers.host ?? "");
    const host = scheme === "https" ? facts!.sni! : hostHeader || facts?.name || "";
    // Inside TLS the Host header must name the SNI host: no fronting one allowed name with another.
    if (!host || (scheme === "https" && hostHeader && hostHeader !== host)) return blocked(BlockReason.HOST);
    // Nor, where the dialled name is known, a Host header naming another one.
    if (facts?.name !== undefined && host !== facts.name) return blocked(BlockReason.HOST);
    if (!this.policy.isHostAllowed(host)) return blocked(BlockReason.HOST);
    let url = req.url ?? "/";
    if (!url.startsWith("/")) {
      // Absolute form ("GET http://x/ HTTP/1.1"): only for the Host it names, sent on in origin form.
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        return blocked(BlockReason.HOST);
      }
      if (normalizeHost(parsed.host) !== host) return blocked(BlockReason.HOST);
      url = parsed.pathname + parsed.search;
    }
    const rawHeaders: Array<[string, string]> = [];
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) rawHeaders.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!]);
    const q = url.indexOf("?");
    // What the rules see and change: the framing and connection headers stay the proxy's.
    const view: RequestView = {
      method: req.method ?? "GET", path: q < 0 ? url : url.slice(0, q), query: q < 0 ? undefined : url.slice(q + 1),
      headers: rawHeaders.filter(([k]) => !PROXY_OWNED_HEADERS.has(k.toLowerCase())),
    };
    let target = host;
    if (!this.interceptor.empty) {
      const outcome = await this.interceptor.before(view, host);
      if (outcome) return { status: 403, reason: BlockReason.RULE, message: BLOCKED_BODY, rule: outcome.blockedBy };
      target = hostOf(view, host);
      // A rule may send the request on to another host: only to one the policy allows.
      if (target !== host && !this.policy.isHostAllowed(target)) return blocked(BlockReason.HOST);
    }
    const finalUrl = view.path + (view.query === undefined ? "" : `?${view.query}`);
    const transport = scheme === "https" ? "tls" : "cleartext";
    const decision = this.policy.secretsFor(target, transport, [finalUrl, ...view.headers.map(([, v]) => v)]);
    if (!decision.ok) return blocked(decision.reason);
    const path = view.query === undefined ? view.path : `${view.path}?${decision.apply(view.query)}`;
    const scanned = decision.scope.redacted.length > 0;
    const rewriteBody = !upgrade && this.interceptor.mayRewriteBody(view, target);
    const contentLength = rawHeaders.filter(([k]) => k.toLowerCase() === "content-length");
    const headers = [...view.headers, ...contentLength]
      .filter(([k]) => !(scanned && UNSCANNABLE_ASKS.has(k.toLowerCase())) && !(rewriteBody && k.toLowerCase() === "accept-encoding"))
      .map(([k, v]) => [k, decision.apply(v)] as [string, string]);
    if (scanned || rewriteBody) headers.push(["Accept-Encoding", "identity"]);
    // The body's framing, stated: Node would send a GET's body unframed, as a second request.
    if (framing.body === "chunked") headers.push(["Transfer-Encoding", "chunked"]);
    return {
      target: { scheme, host: target, port }, path, shownUrl: urlOf({ scheme, host: target, port }, finalUrl), headers,
      redactions: redactionsOf(decision.scope.redacted), scope: decision.scope, view, rewriteBody,
    };
  }

  private async handle(scheme: Scheme, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = Date.now();
    const base = { method: req.method ?? "", url: req.url ?? "", request_bytes: Number(req.headers["content-length"]) || 0 };
    const admitted = await this.admit(scheme, req, false);
    if ("reason" in admitted) {
      if (admitted.rule) this.log(`proxy: ${base.url}: blocked by interception rule ${admitted.rule}`);
      this.event({ ...base, host: normalizeHost(req.headers.host ?? ""), status_code: admitted.status, blocked: true, block_reason: admitted.reason, duration_ms: Date.now() - started });
      req.resume();
      return refuse(res, admitted);
    }
    const { target, path, shownUrl, headers, redactions, view, rewriteBody } = admitted;
    const shown = { ...base, url: shownUrl, host: target.host };
    let address: string;
    try {
      address = await pickAddress(this.policy, target.host, this.resolver);
    } catch (err) {
      const blocked = err instanceof UpstreamBlockedError;
      this.event({ ...shown, status_code: blocked ? 403 : 502, blocked, ...(blocked ? { block_reason: err.reason } : {}), duration_ms: Date.now() - started });
      req.resume();
      return blocked ? forbid(res) : fail(res);
    }
    let upstream: http.ClientRequest;
    try {
      upstream = this.request(target, address, req.method ?? "GET", path, headers);
    } catch (err) {
      // Node refuses what cannot go on the wire (a secret's value with a line break, say).
      this.log(`proxy: ${shownUrl}: ${(err as Error).message}`);
      this.event({ ...shown, status_code: 502, blocked: false, duration_ms: Date.now() - started });
      req.resume();
      return fail(res);
    }
    let responded = false;
    upstream.on("response", async (up) => {
      responded = true;
      const answer = guestAnswer(up, redactions, rewriteBody);
      if ("unscannable" in answer) {
        up.destroy();
        const why = redactions.length ? "cannot scan for secrets" : "cannot decode to apply the interception rules";
        this.log(`proxy: ${shownUrl}: answered in ${answer.unscannable}, which the proxy ${why}: refused`);
        this.event({ ...shown, status_code: 502, blocked: true, block_reason: redactions.length ? BlockReason.UNSCANNABLE : BlockReason.UNREWRITABLE, duration_ms: Date.now() - started });
        return fail(res, `Refused: ${target.host} answered in ${answer.unscannable}, which the proxy ${why}`);
      }
      let body: Readable | Buffer = answer.body;
      let outHeaders = answer.headers;
      if (!this.interceptor.empty) {
        let after;
        try {
          after = await this.afterRules(req.method ?? "GET", view, target.host, up.statusCode ?? 502, answer, redactions);
        } catch (err) {
          up.destroy();
          this.log(`proxy: ${shownUrl}: interception rules failed: ${(err as Error).message}`);
          return fail(res);
        }
        if (res.destroyed) return void up.destroy();
        if ("blockedBy" in after) {
          up.destroy();
          this.log(`proxy: ${shownUrl}: answer blocked by interception rule ${after.blockedBy}`);
          this.event({ ...shown, status_code: 403, blocked: true, block_reason: BlockReason.RULE, duration_ms: Date.now() - started });
          return forbid(res);
        }
        ({ body, headers: outHeaders } = after);
        if (Buffer.isBuffer(body)) up.resume(); // the upstream's own body is not used
      }
      try {
        res.writeHead(up.statusCode ?? 502, answer.statusMessage, outHeaders.flat());
      } catch (err) {
        up.destroy();
        this.log(`proxy: ${shownUrl}: the answer cannot be passed on: ${(err as Error).message}`);
        this.event({ ...shown, status_code: 502, blocked: false, duration_ms: Date.now() - started });
        return fail(res);
      }
      res.flushHeaders(); // streaming bodies (SSE) must not wait for the first chunk to be buffered
      if (Buffer.isBuffer(body)) res.end(body);
      else {
        body.pipe(res);
        body.on("error", () => res.destroy());
      }
      up.on("error", () => res.destroy());
      res.once("close", () => {
        if (!up.complete) up.destroy();
        this.event({ ...shown, status_code: up.statusCode ?? 0, response_bytes: Number(up.headers["content-length"]) || 0, blocked: false, duration_ms: Date.now() - started });
      });
    });
    // No answer from upstream in time: give up (once a response has started, it may idle, e.g. SSE).
    upstream.once("timeout", () => {
      if (!responded) upstream.destroy(new Error("upstream did not answer in time"));
    });
    upstream.on("error", (err) => {
      this.log(`proxy: ${shownUrl}: ${err.message}`);
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
      // No SNI for an address (RFC 6066); the certificate is still checked against it.
      servername: net.isIP(target.host) ? "" : target.host,
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
    const admitted = await this.admit(scheme, req, true);
    if ("reason" in admitted) {
      if (admitted.rule) this.log(`proxy: ${base.url}: blocked by interception rule ${admitted.rule}`);
      this.event({ ...base, host: normalizeHost(req.headers.host ?? ""), status_code: admitted.status, blocked: true, block_reason: admitted.reason, duration_ms: Date.now() - started });
      socket.end(rawReply(admitted));
      return;
    }
    const { target, path, shownUrl, redactions, scope } = admitted;
    const shown = { ...base, url: shownUrl, host: target.host };
    let address: string;
    try {
      address = await pickAddress(this.policy, target.host, this.resolver);
    } catch (err) {
      const blocked = err instanceof UpstreamBlockedError;
      this.event({ ...shown, status_code: blocked ? 403 : 502, blocked, ...(blocked ? { block_reason: err.reason } : {}), duration_ms: Date.now() - started });
      socket.end(rawReply(blocked ? { status: 403, message: BLOCKED_BODY } : { status: 502, message: "Failed to connect" }));
      return;
    }
    const websocket = /websocket/i.test(String(req.headers.upgrade ?? ""));
    if (!websocket && redactions.length) {
      // Another protocol (h2c, ...) would be relayed unscanned: the secret's host could hand
      // back its value, or receive a substituted one nobody sees echoed. Websocket only.
      this.event({ ...shown, status_code: 403, blocked: true, block_reason: BlockReason.UNSCANNABLE, duration_ms: Date.now() - started });
      socket.end(rawReply({ status: 403, message: BLOCKED_BODY }));
      return;
    }
    // Compressed frames (permessage-deflate) could not be scanned: no extension is offered upstream.
    const offered = websocket && this.policy.secrets.length ? admitted.headers.filter(([k]) => k.toLowerCase() !== "sec-websocket-extensions") : admitted.headers;
    const headers = [...offered, ["Connection", "Upgrade"] as [string, string], ["Upgrade", String(req.headers.upgrade ?? "")] as [string, string]];
    let up: http.ClientRequest;
    try {
      up = this.request(target, address, req.method ?? "GET", path, headers, false);
    } catch (err) {
      this.log(`proxy: ${shownUrl}: ${(err as Error).message}`);
      socket.end(rawReply({ status: 502, message: "Failed to connect" }));
      return;
    }
    up.on("upgrade", (upRes, upSocket, upHead) => {
      const lines = [`HTTP/1.1 ${upRes.statusCode} ${redactText(upRes.statusMessage ?? "", redactions)}`];
      // Headers may echo what the request carried (a placeholder in Sec-WebSocket-Protocol): redact.
      for (let i = 0; i + 1 < upRes.rawHeaders.length; i += 2) {
        lines.push(`${redactText(upRes.rawHeaders[i]!, redactions)}: ${redactText(upRes.rawHeaders[i + 1]!, redactions)}`);
      }
      socket.write(lines.join("\r\n") + "\r\n\r\n");
      this.event({ ...shown, status_code: upRes.statusCode ?? 0, blocked: false, duration_ms: Date.now() - started });
      if (!websocket) {
        // Another protocol, to a host without secrets: relayed like raw TCP to an allowed name, unscanned.
        if (upHead.length) socket.write(upHead);
        if (head.length) upSocket.write(head);
        upSocket.pipe(socket).pipe(upSocket);
        upSocket.on("error", () => socket.destroy());
        socket.on("close", () => upSocket.destroy());
        upSocket.on("close", () => socket.destroy());
        return;
      }
      relayWebSocket(this.policy.secrets.length ? scope : undefined, socket, head, upSocket, upHead, {
        onBlocked: (reason) => this.event({ ...shown, method: "WEBSOCKET", blocked: true, block_reason: reason, duration_ms: Date.now() - started }),
        onError: (message) => this.log(`proxy: websocket ${shownUrl}: ${message}`),
      });
    });
    up.on("response", (res) => {
      // The server refused the upgrade: pass its answer on, scanned like any other, and close.
      const answer = guestAnswer(res, redactions);
      if ("unscannable" in answer) {
        res.destroy();
        this.event({ ...shown, status_code: 502, blocked: true, block_reason: BlockReason.UNSCANNABLE, duration_ms: Date.now() - started });
        socket.end(rawReply({ status: 502, message: `Refused: ${target.host} answered in ${answer.unscannable}, which the proxy cannot scan for secrets` }));
        return;
      }
      const lines = [`HTTP/1.1 ${res.statusCode} ${answer.statusMessage}`, ...answer.headers.map(([k, v]) => `${k}: ${v}`), "Connection: close"];
      socket.write(lines.join("\r\n") + "\r\n\r\n");
      this.event({ ...shown, status_code: res.statusCode ?? 0, blocked: false, duration_ms: Date.now() - started });
      answer.body.pipe(socket);
      answer.body.on("error", () => socket.destroy());
    });
    up.on("error", (err) => {
      this.log(`proxy: ${shownUrl}: ${err.message}`);
      socket.destroy();
    });
    up.end();
  }

  /**
   * The `after` rules on an answer (already scanned for secrets): its headers and body as they
   * go to the guest, or the rule that blocked it. A rewritten body has no Content-Length (it
   * is streamed, its length unknown) unless a rule set the whole body; for a secret's host it
   * is scanned again, so nothing a rule put in can carry a secret's value to the guest.
   */
  private async afterRules(
    method: string, view: RequestView, host: string, status: number, answer: { headers: Array<[string, string]>; body: Readable }, redactions: Replacement[],
  ): Promise<{ blockedBy: string } | { headers: Array<[string, string]>; body: Readable | Buffer }> {
    const isLength = (k: string) => k.toLowerCase() === "content-length";
    const contentType = answer.headers.find(([k]) => k.toLowerCase() === "content-type")?.[1] ?? "";
    const res: ResponseView = { status, headers: answer.headers.filter(([k]) => !isLength(k)), isSSE: /^\s*text\/event-stream/i.test(contentType) };
    const plan = await this.interceptor.after(view, host, res);
    if ("blockedBy" in plan) return plan;
    const rescan = (b: Buffer) => (redactions.length ? replaceAll(b, redactions) : b);
    if (plan.setBody) {
      const body = rescan(replaceInBuffer(plan.setBody, plan.replacements));
      return { headers: [...res.headers, ["Content-Length", String(body.length)]], body };
    }
    const bodiless = method === "HEAD" || status === 204 || status === 304 || (status >= 100 && status < 200);
    if (!plan.replacements.length || bodiless) return { headers: [...res.headers, ...answer.headers.filter(([k]) => isLength(k))], body: answer.body };
    const steps = [res.isSSE ? new SseDataRewrite(plan.replacements) : new BodyRewrite(plan.replacements), ...(redactions.length ? [new RedactStream(redactions)] : [])];
    const last = steps.at(-1)!;
    // Errors end up on the last stream (pipeline destroys every stream with them): the caller watches it.
    pipeline([answer.body, ...steps], () => {});
    return { headers: res.headers, body: last };
  }

  private event(e: Partial<NetworkEvent> & { host: string; blocked: boolean }): void {
    this.onEvent({
      method: "", url: "", status_code: 0, request_bytes: 0, response_bytes: 0, duration_ms: 0, ...e,
    });
  }
}

function replaceAll(b: Buffer, replacements: Replacement[]): Buffer {
  const r = new StreamReplacer(replacements);
  return Buffer.concat([r.push(b), r.flush()]);
}

function urlOf(t: Target, path: string): string {
  return `${t.scheme}://${t.host}${t.port === DEFAULT_PORT[t.scheme] ? "" : `:${t.port}`}${path}`;
}

function forbid(res: ServerResponse): void {
  refuse(res, { status: 403, message: BLOCKED_BODY });
}

function fail(res: ServerResponse, body = "Failed to connect"): void {
  refuse(res, { status: 502, message: body });
}

function refuse(res: ServerResponse, r: Pick<Refusal, "status" | "message">): void {
  res.writeHead(r.status, { "Content-Type": "text/plain", "Content-Length": Buffer.byteLength(r.message), Connection: "close" });
  res.end(r.message);
}

/** A refusal written straight to a socket that has no HTTP response object (upgrades, parse errors). */
function rawReply(r: Pick<Refusal, "status" | "message">): string {
  return `HTTP/1.1 ${r.status} ${STATUS_CODES[r.status] ?? ""}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(r.message)}\r\nConnection: close\r\n\r\n${r.message}`;
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
