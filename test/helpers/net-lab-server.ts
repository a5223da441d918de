// The test's upstream world, run inside a network namespace the test creates: HTTP on :80 and
// :8080, HTTPS on :443 and :8443 (certificate from the test CA, for every test name), with
// endpoints for each network scenario and a real websocket server on all four; a raw TCP echo
// on :7777; a UDP sink on :9999; a DNS server on :53 answering every test name (and
// dnsonly.test, which the engine's test hosts file lacks) with this server's address.
// /udp-log and /dns-log say what the last two received, so a test can prove nothing arrived.
// On a second address, a raw upstream (HTTP on :80, HTTPS on :443) that logs every line it
// receives that looks like a request line, wherever it is in the byte stream (/raw-log on the
// main address lists them): a test of request smuggling proves what never arrived.
// Started with: node net-lab-server.js <cert.pem> <key.pem> <server ip> <raw ip> <name>...
import dnsPacket from "dns-packet";
import { createHash } from "node:crypto";
import { createSocket } from "node:dgram";
import { readFileSync } from "node:fs";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import net, { type Socket } from "node:net";
import tls from "node:tls";
import zlib from "node:zlib";
import { WebSocketServer } from "ws";

const [certFile, keyFile, serverIp, rawIp, ...names] = process.argv.slice(2);
const DNS_ONLY = "dnsonly.test";
const udpLog: string[] = [];
const dnsLog: string[] = [];
const sha = (v: string | Buffer) => createHash("sha256").update(v).digest("hex");
/** What /store kept (and /load, or a websocket "load:<id>" message, hands back), by id. */
const stored = new Map<string, string>();
/** Content codings /load can force on its body, whatever the request accepted ("zstd": labelled only). */
const ENCODE: Record<string, (b: Buffer) => Buffer> = {
  identity: (b) => b, gzip: (b) => zlib.gzipSync(b), deflate: (b) => zlib.deflateSync(b), br: (b) => zlib.brotliCompressSync(b), zstd: (b) => b,
};
/** /sse streams waiting for their /sse-release, by the id the client chose. */
const sseWaiting = new Map<string, () => void>();

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? "/", "http://x");
  const socketId = (req.socket as Socket & { labId?: number }).labId ??= Math.floor(Math.random() * 1e9);
  switch (url.pathname) {
    case "/hello":
      return void res.end(`hello from ${req.headers.host}\n`);
    case "/udp-log":
      return void res.end(JSON.stringify(udpLog));
    case "/dns-log":
      return void res.end(JSON.stringify(dnsLog));
    case "/raw-log":
      return void res.end(JSON.stringify(rawLog));
    case "/store": {
      // Keeps what the request carried (the proxy put the secret's value in): a header or the query.
      const value = String(req.headers["x-store"] ?? url.searchParams.get("value") ?? "");
      stored.set(url.searchParams.get("id") ?? "", value);
      return void res.end(`stored ${value.length} bytes\n`);
    }
    case "/load": {
      // Hands it back in the status text, a header and the body, in the coding asked for in the
      // query (never what the request accepted), and honours a byte range of the plain body.
      const value = stored.get(url.searchParams.get("id") ?? "") ?? "";
      const coding = url.searchParams.get("enc") ?? "identity";
      let body = Buffer.from(JSON.stringify({ loaded: value, range: req.headers.range ?? null }));
      const range = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range ?? ""));
      if (range) body = body.subarray(Number(range[1]), Number(range[2]) + 1);
      const encoded = ENCODE[coding]!(body);
      res.writeHead(range ? 206 : 200, `Loaded ${value}`, { "Content-Type": "application/json", "Content-Encoding": coding, "Content-Length": encoded.length, "X-Loaded": value });
      return void res.end(encoded);
    }
    case "/response-headers": {
      // As httpbin's: each query parameter becomes a response header and the body lists them
      // (in the coding `enc` names, whatever the request accepted).
      const params = Object.fromEntries(url.searchParams);
      const body = ENCODE[params.enc ?? "identity"]!(Buffer.from(JSON.stringify(params)));
      for (const [k, v] of Object.entries(params)) res.setHeader(k, v);
      res.writeHead(200, { "Content-Type": "application/json", "Content-Encoding": params.enc ?? "identity", "Content-Length": body.length });
      return void res.end(body);
    }
    case "/hangup":
      // An upstream that fails: the connection closes with no answer.
      return void req.socket.destroy();
    case "/echo": {
      // Echoes everything the proxy sent us: the test checks what a secret became upstream.
      // Digests too, so a test can check what arrived even where the proxy redacts the echo.
      const body = JSON.stringify({
        url: req.url, headers: req.headers, socket: socketId,
        urlSha: sha(req.url ?? ""), authSha: sha(String(req.headers.authorization ?? "")),
      });
      res.writeHead(200, { "Content-Type": "application/json" });
      return void res.end(body);
    }
    case "/chunked": {
      res.writeHead(200, { "Content-Type": "text/plain" }); // no length: chunked
      let n = 0;
      const t = setInterval(() => {
        res.write(`chunk ${n}\n`);
        if (++n === 5) { clearInterval(t); res.end(); }
      }, 50);
      return;
    }
    case "/sse": {
      // The first event, then the rest only once the client says (on another connection) that
      // it got the first: a proxy that held the body back would never let that happen.
      res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
      res.write("data: event 0\n\n");
      sseWaiting.set(url.searchParams.get("id") ?? "", () => res.end("data: event 1\n\ndata: event 2\n\n"));
      return;
    }
    case "/sse-release": {
      const release = sseWaiting.get(url.searchParams.get("id") ?? "");
      sseWaiting.delete(url.searchParams.get("id") ?? "");
      release?.();
      return void res.end(release ? "released\n" : "no such stream\n");
    }
    case "/redirect":
      res.writeHead(302, { Location: url.searchParams.get("to") ?? "/" });
      return void res.end();
    case "/big": {
      const mb = Number(url.searchParams.get("mb") ?? "1");
      const chunk = Buffer.alloc(1024 * 1024, 0x61);
      res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": mb * chunk.length });
      let sent = 0;
      const pump = () => {
        while (sent < mb) {
          sent++;
          if (!res.write(chunk)) return void res.once("drain", pump);
        }
        res.end();
      };
      return pump();
    }
    default:
      res.writeHead(404);
      res.end("not found\n");
  }
}

// Answers each message with what arrived: its text, digest and how it was framed (the proxy
// must have put secrets in and taken out compression).
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
wss.on("connection", (ws, req) => {
  ws.on("message", (data, binary) => {
    const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]);
    const load = /^load:(.*)$/.exec(buf.toString());
    if (load) return void ws.send(stored.get(load[1]!) ?? "");
    ws.send(JSON.stringify({ text: buf.toString(), sha: sha(buf), binary, host: req.headers.host, extensions: req.headers["sec-websocket-extensions"] ?? null }));
  });
});
function upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req));
}

function listen(server: net.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => server.once("error", reject).listen(port, host, resolve));
}

function rawEcho(s: net.Socket): void {
  s.on("error", () => s.destroy());
  s.write("echo-server\n");
  s.on("data", (d: Buffer) => {
    s.write(d);
    for (const [, id] of d.toString("latin1").matchAll(/^load:(\S*)$/gm)) s.write(`loaded ${stored.get(id!) ?? ""}\n`);
  });
}

const rawLog: string[] = [];
const REQUEST_LINE = /^[A-Z]+ \S+ HTTP\/\d\.\d$/;

/**
 * The raw upstream on one connection: every line that looks like a request line goes to
 * rawLog, wherever it is (a body too); each request it parses (head, then a Content-Length or
 * chunked body) gets a 200 naming its request line and body, and the connection stays open.
 */
function rawUpstream(socket: net.Socket): void {
  socket.on("error", () => socket.destroy());
  let lines = Buffer.alloc(0);
  let pending = Buffer.alloc(0);
  socket.on("data", (d: Buffer) => {
    lines = Buffer.concat([lines, d]);
    for (let nl = lines.indexOf(10); nl >= 0; nl = lines.indexOf(10)) {
      const line = lines.subarray(0, nl).toString("latin1").replace(/\r$/, "");
      if (REQUEST_LINE.test(line)) rawLog.push(line);
      lines = lines.subarray(nl + 1);
    }
    pending = Buffer.concat([pending, d]);
    for (let request = takeRequest(pending); request; request = takeRequest(pending)) {
      pending = pending.subarray(request.size);
      const answer = JSON.stringify({ request: request.line, body: request.body });
      socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(answer)}\r\n\r\n${answer}`);
    }
  });
}

/** One whole request at the start of `buf`, or undefined while it is incomplete. */
function takeRequest(buf: Buffer): { line: string; body: string; size: number } | undefined {
  const end = buf.indexOf("\r\n\r\n");
  if (end < 0) return undefined;
  const [line, ...headers] = buf.subarray(0, end).toString("latin1").split("\r\n");
  const header = (name: string) => headers.find((h) => h.toLowerCase().startsWith(`${name}:`))?.slice(name.length + 1).trim();
  let at = end + 4;
  if (header("transfer-encoding")?.toLowerCase() === "chunked") {
    const parts: Buffer[] = [];
    for (;;) {
      const eol = buf.indexOf("\r\n", at);
      if (eol < 0) return undefined;
      const size = parseInt(buf.subarray(at, eol).toString("latin1"), 16);
      if (buf.length < eol + 2 + size + 2) return undefined;
      parts.push(buf.subarray(eol + 2, eol + 2 + size));
      at = eol + 2 + size + 2;
      if (size === 0) break;
    }
    return { line: line!, body: Buffer.concat(parts).toString("latin1"), size: at };
  }
  const length = Number(header("content-length") ?? 0);
  if (buf.length < at + length) return undefined;
  return { line: line!, body: buf.subarray(at, at + length).toString("latin1"), size: at + length };
}

const tlsOptions = { cert: readFileSync(certFile!), key: readFileSync(keyFile!) };
const servers: Array<[net.Server, number, string]> = [
  [http.createServer(handle).on("upgrade", upgrade), 80, serverIp!],
  [http.createServer(handle).on("upgrade", upgrade), 8080, serverIp!],
  [https.createServer(tlsOptions, handle).on("upgrade", upgrade), 443, serverIp!],
  [https.createServer(tlsOptions, handle).on("upgrade", upgrade), 8443, serverIp!],
  // Raw TCP: says who it is, then echoes (and answers a "load:<id>" line with what /store kept).
  [net.createServer(rawEcho), 7777, serverIp!],
  [net.createServer(rawUpstream), 80, rawIp!],
  [tls.createServer(tlsOptions, rawUpstream), 443, rawIp!],
];

const udp = createSocket("udp4").on("message", (msg, r) => udpLog.push(`${r.address}:${msg.toString()}`));
const dns = createSocket("udp4").on("message", (msg, r) => {
  let q: dnsPacket.Packet;
  try { q = dnsPacket.decode(msg); } catch { return; }
  const question = q.questions?.[0];
  if (!question) return;
  const name = question.name.toLowerCase();
  dnsLog.push(`${question.type} ${name}`);
  const known = name === DNS_ONLY || names.includes(name);
  const answers: dnsPacket.Answer[] = known && question.type === "A" ? [{ type: "A", name: question.name, ttl: 5, data: serverIp! }] : [];
  dns.send(dnsPacket.encode({ id: q.id, type: "response", flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (known ? 0 : 3), questions: [question], answers }), r.port, r.address);
});

for (const [server, port, host] of servers) await listen(server, port, host);
await new Promise<void>((resolve) => udp.bind(9999, resolve));
await new Promise<void>((resolve) => dns.bind(53, resolve));
process.stdout.write("ready\n");
// Bounded life: the lab never outlives its test run by much.
setTimeout(() => process.exit(0), 20 * 60_000).unref();
