// The test's upstream world, run inside a network namespace the test creates: HTTP on :80 and
// :8080, HTTPS on :443 and :8443 (certificate from the test CA, for every test name), with
// endpoints for each network scenario and a real websocket server on all four; a raw TCP echo
// on :7777; a UDP sink on :9999; a DNS server on :53 answering every test name (and
// dnsonly.test, which the engine's test hosts file lacks) with this server's address.
// /udp-log and /dns-log say what the last two received, so a test can prove nothing arrived.
// Started with: node net-lab-server.js <cert.pem> <key.pem> <server ip> <name>...
import dnsPacket from "dns-packet";
import { createHash } from "node:crypto";
import { createSocket } from "node:dgram";
import { readFileSync } from "node:fs";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import net, { type Socket } from "node:net";
import { WebSocketServer } from "ws";

const [certFile, keyFile, serverIp, ...names] = process.argv.slice(2);
const DNS_ONLY = "dnsonly.test";
const udpLog: string[] = [];
const dnsLog: string[] = [];
const sha = (v: string | Buffer) => createHash("sha256").update(v).digest("hex");
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
    ws.send(JSON.stringify({ text: buf.toString(), sha: sha(buf), binary, host: req.headers.host, extensions: req.headers["sec-websocket-extensions"] ?? null }));
  });
});
function upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req));
}

function listen(server: net.Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => server.once("error", reject).listen(port, resolve));
}

const tlsOptions = { cert: readFileSync(certFile!), key: readFileSync(keyFile!) };
const servers: Array<[net.Server, number]> = [
  [http.createServer(handle).on("upgrade", upgrade), 80],
  [http.createServer(handle).on("upgrade", upgrade), 8080],
  [https.createServer(tlsOptions, handle).on("upgrade", upgrade), 443],
  [https.createServer(tlsOptions, handle).on("upgrade", upgrade), 8443],
  // Raw TCP: says who it is, then echoes.
  [net.createServer((s) => { s.write("echo-server\n"); s.pipe(s); s.on("error", () => s.destroy()); }), 7777],
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

for (const [server, port] of servers) await listen(server, port);
await new Promise<void>((resolve) => udp.bind(9999, resolve));
await new Promise<void>((resolve) => dns.bind(53, resolve));
process.stdout.write("ready\n");
// Bounded life: the lab never outlives its test run by much.
setTimeout(() => process.exit(0), 20 * 60_000).unref();
