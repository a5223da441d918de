// The test's upstream world, run inside a network namespace the test creates: HTTP on :80 and
// HTTPS on :443 (certificate from the test CA, for every test name), with endpoints for each
// network scenario. Started with: node net-lab-server.js <cert.pem> <key.pem>
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import type { Socket } from "node:net";

const [certFile, keyFile] = process.argv.slice(2);

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? "/", "http://x");
  const socketId = (req.socket as Socket & { labId?: number }).labId ??= Math.floor(Math.random() * 1e9);
  switch (url.pathname) {
    case "/hello":
      return void res.end(`hello from ${req.headers.host}\n`);
    case "/echo": {
      // Echoes everything the proxy sent us: the test checks what a secret became upstream.
      // Digests too, so a test can check what arrived even where the proxy redacts the echo.
      const sha = (v: string) => createHash("sha256").update(v).digest("hex");
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
      res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
      let n = 0;
      const t = setInterval(() => {
        res.write(`data: event ${n}\n\n`);
        if (++n === 3) { clearInterval(t); res.end(); }
      }, 100);
      return;
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

function upgrade(req: IncomingMessage, socket: Socket): void {
  // Not a full websocket: a 101 and then an echo of whatever the client sends.
  socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
    `Sec-WebSocket-Accept: ${createHash("sha1").update(String(req.headers["sec-websocket-key"] ?? "") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64")}\r\n\r\n`);
  socket.pipe(socket);
}

const plain = http.createServer(handle).on("upgrade", upgrade);
const secure = https.createServer({ cert: readFileSync(certFile!), key: readFileSync(keyFile!) }, handle).on("upgrade", upgrade);
plain.listen(80, () => secure.listen(443, () => process.stdout.write("ready\n")));
// Bounded life: the lab never outlives its test run by much.
setTimeout(() => process.exit(0), 20 * 60_000).unref();
