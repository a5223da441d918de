// Attacks on the network seal's proxy from inside a real sandbox (whichever engine
// $MATCHLOCK_BACKEND names), against servers in a network namespace this test creates
// (test/helpers/net-lab.ts): request smuggling past the proxy's checks, reading a secret's
// value back from its own host, and the value showing up in events or the engine's log.
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Client, Sandbox } from "../../src/sdk/index.js";
import { CLI, eventually, PYTHON, setUpE2E } from "../helpers/e2e.js";
import { FETCH_PY, RAW_HTTP_PY, STREAM_PY, WS_PY, type FetchResult, type RawAnswer, type WsResult } from "../helpers/guest-net-scripts.js";
import { RAW_NAME, startNetLab, type NetLab } from "../helpers/net-lab.js";

const SECRET = "sk-attack-target-51c0e2";
const PLAIN_SECRET = "sk-cleartext-ok-93ab1f";
const sha256 = (v: string) => createHash("sha256").update(v).digest("hex");
const MALFORMED = "malformed or ambiguous request";
const CLEARTEXT = "secret placeholder sent over cleartext HTTP";
const UNSCANNABLE = "response from a secret's host cannot be scanned";

/** A request hidden in a body: it must never reach the upstream as a request. */
const smuggled = (tag: string) => `GET /smuggled-${tag} HTTP/1.1\r\nHost: other.test\r\n\r\n`;
const chunked = (body: string) => `${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`;

type NetEvent = Record<string, unknown>;

describe("network seal: attacks on the proxy", () => {
  let lab: NetLab;
  let client: Client;
  let engineLog: string;
  let placeholder: string;
  let plainPlaceholder: string;
  const events: NetEvent[] = [];

  /** Events (their network part) matching `match`, waited for: they are sent once an answer is done. */
  const eventsFor = async (match: (e: NetEvent) => boolean, count = 1): Promise<NetEvent[]> => {
    await eventually(async () => (events.filter(match).length >= count ? [] : ["waiting"]), 60_000);
    return events.filter(match);
  };
  const rawLog = async (): Promise<string[]> => (await (await globalThis.fetch(`http://${lab.serverIp}/raw-log`)).json()) as string[];
  const fetch = async (url: string, ...headers: string[]): Promise<FetchResult> => {
    const r = await client.exec(`python3 /tmp/fetch.py ${[url, ...headers].map((a) => `"${a}"`).join(" ")}`);
    assert.equal(r.exitCode, 0, r.stderr);
    return JSON.parse(r.stdout) as FetchResult;
  };
  /** Sends each connection's requests byte for byte from the guest; one answer list per connection. */
  const raw = async (connections: Array<{ host?: string; port: number; requests: string[] }>): Promise<RawAnswer[][]> => {
    const spec = connections.map((c) => ({
      host: c.host ?? RAW_NAME, port: c.port, tls: c.port === 443, requests: c.requests.map((r) => Buffer.from(r, "latin1").toString("base64")),
    }));
    await client.writeFile("/tmp/spec.json", JSON.stringify(spec));
    const r = await client.exec("python3 /tmp/raw.py /tmp/spec.json");
    assert.equal(r.exitCode, 0, r.stderr);
    return JSON.parse(r.stdout) as RawAnswer[][];
  };
  const ws = async (host: string, port: number, text: string): Promise<WsResult> => {
    const r = await client.exec(`python3 /tmp/ws.py ${host} ${port} ${port === 443 ? 1 : 0} - "${text}"`);
    assert.equal(r.exitCode, 0, r.stderr);
    return JSON.parse(r.stdout) as WsResult;
  };

  before(async () => {
    await setUpE2E();
    lab = await startNetLab();
    // The engine as users start it, with its stderr kept for the last test.
    const dir = mkdtempSync(join(tmpdir(), "matchlock-attacks-"));
    engineLog = join(dir, "engine.log");
    writeFileSync(engineLog, "");
    const bin = join(dir, "matchlock");
    writeFileSync(bin, `#!/bin/sh\nexec '${process.execPath}' '${CLI}' "$@" 2>>'${engineLog}'\n`);
    chmodSync(bin, 0o755);
    client = new Client({ binaryPath: bin });
    client.onEvent((e) => events.push((e as unknown as { network: NetEvent }).network ?? {}));
    await client.launch(
      new Sandbox(PYTHON).allowHost("allowed.test", RAW_NAME)
        .addSecret("API_KEY", SECRET, "secret.test")
        .addSecret("PLAIN_KEY", PLAIN_SECRET, { hosts: ["secret.test"], allowCleartext: true })
        .allowPrivateIPs(), // the lab lives on 10.254.x.x
    );
    await client.writeFile("/tmp/fetch.py", FETCH_PY);
    await client.writeFile("/tmp/raw.py", RAW_HTTP_PY);
    await client.writeFile("/tmp/ws.py", WS_PY);
    [placeholder, plainPlaceholder] = (await client.exec("echo $API_KEY $PLAIN_KEY")).stdout.trim().split(" ") as [string, string];
    assert.match(placeholder, /^SANDBOX_SECRET_[0-9a-f]{32}$/);
  });
  after(async () => {
    await client?.close();
    await client?.remove();
    await lab?.stop();
  });

  describe("request smuggling", () => {
    for (const port of [80, 443]) {
      test(`a chunked body on GET/HEAD/DELETE/OPTIONS is refused with 400, nothing reaches the upstream (:${port})`, async () => {
        const methods = ["GET", "HEAD", "DELETE", "OPTIONS"];
        const answers = await raw(methods.map((m) => ({
          port,
          requests: [`${m} /te-${m}-${port} HTTP/1.1\r\nHost: ${RAW_NAME}\r\nTransfer-Encoding: chunked\r\n\r\n${chunked(smuggled(`${m}-${port}`))}`],
        })));
        for (const [i, m] of methods.entries()) {
          const [answer] = answers[i]!;
          assert.equal((answer as { status: number }).status, 400, `${m}: ${JSON.stringify(answer)}`);
          if (m !== "HEAD") assert.match((answer as { body: string }).body, new RegExp(`^Bad request: a chunked body on a ${m} request`));
        }
        const log = await rawLog();
        assert.deepEqual(log.filter((l) => l.includes(`-${port}`) && /\/(te|smuggled)-/.test(l)), [], "no line of these requests arrived");
        const refused = await eventsFor((e) => e.block_reason === MALFORMED && String(e.url).startsWith("/te-") && String(e.url).endsWith(`-${port}`), methods.length);
        assert.ok(refused.every((e) => e.status_code === 400 && e.blocked === true));
      });

      test(`ambiguous framing is refused with 400 and nothing of it arrives (:${port})`, async () => {
        const cases: Record<string, string> = {
          "te-and-cl": `POST /amb HTTP/1.1\r\nHost: ${RAW_NAME}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n${chunked(smuggled(`te-and-cl-${port}`))}`,
          "duplicate-cl": `POST /amb HTTP/1.1\r\nHost: ${RAW_NAME}\r\nContent-Length: 0\r\nContent-Length: ${smuggled("x").length}\r\n\r\n${smuggled(`duplicate-cl-${port}`)}`,
          "cl-list": `POST /amb HTTP/1.1\r\nHost: ${RAW_NAME}\r\nContent-Length: 0, 0\r\n\r\n${smuggled(`cl-list-${port}`)}`,
          "obs-fold": `POST /amb HTTP/1.1\r\nHost: ${RAW_NAME}\r\nX-Fold: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n${chunked(smuggled(`obs-fold-${port}`))}`,
          "bare-lf-header": `POST /amb HTTP/1.1\r\nHost: ${RAW_NAME}\nTransfer-Encoding: chunked\r\n\r\n${chunked(smuggled(`bare-lf-header-${port}`))}`,
          "bare-lf-chunk": `POST /amb HTTP/1.1\r\nHost: ${RAW_NAME}\r\nTransfer-Encoding: chunked\r\n\r\n1\n${smuggled(`bare-lf-chunk-${port}`)}\r\n0\r\n\r\n`,
          "te-gzip-chunked": `POST /amb HTTP/1.1\r\nHost: ${RAW_NAME}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n${chunked(smuggled(`te-gzip-chunked-${port}`))}`,
          "te-twice": `POST /amb HTTP/1.1\r\nHost: ${RAW_NAME}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n${chunked(smuggled(`te-twice-${port}`))}`,
          "te-http10": `POST /amb HTTP/1.0\r\nHost: ${RAW_NAME}\r\nTransfer-Encoding: chunked\r\n\r\n${chunked(smuggled(`te-http10-${port}`))}`,
          "duplicate-host": `GET /smuggled-duplicate-host-${port} HTTP/1.1\r\nHost: ${RAW_NAME}\r\nHost: other.test\r\n\r\n`,
        };
        const before = events.length;
        const answers = await raw(Object.values(cases).map((request) => ({ port, requests: [request] })));
        for (const [i, name] of Object.keys(cases).entries()) {
          const [answer] = answers[i]!;
          assert.equal((answer as { status: number }).status, 400, `${name}: ${JSON.stringify(answer)}`);
          assert.match((answer as { body: string }).body, /^Bad request: ./, name);
        }
        assert.deepEqual((await rawLog()).filter((l) => l.includes("/amb") || l.includes(`-${port} `)), [], "nothing of these requests arrived");
        await eventsFor((e) => e.block_reason === MALFORMED, events.slice(0, before).filter((e) => e.block_reason === MALFORMED).length + Object.keys(cases).length);
      });

      test(`keep-alive: each request on one guest connection is parsed, checked and reported like the first (:${port})`, async () => {
        const tag = `ka${port}`;
        const [first, second] = await raw([
          {
            port,
            requests: [
              `GET /${tag}-plain HTTP/1.1\r\nHost: ${RAW_NAME}\r\n\r\n`,
              `POST /${tag}-upload HTTP/1.1\r\nHost: ${RAW_NAME}\r\nTransfer-Encoding: chunked\r\n\r\n${chunked("payload")}`,
              `GET /${tag}-smuggle HTTP/1.1\r\nHost: ${RAW_NAME}\r\nTransfer-Encoding: chunked\r\n\r\n${chunked(smuggled(tag))}`,
            ],
          },
          { port, requests: [`GET /${tag}-again HTTP/1.1\r\nHost: ${RAW_NAME}\r\n\r\n`, `GET /${tag}-fronted HTTP/1.1\r\nHost: other.test\r\n\r\n`] },
        ]);
        const statuses = (answers: RawAnswer[]) => answers.map((a) => ("status" in a ? a.status : "closed"));
        assert.deepEqual(statuses(first!), [200, 200, 400]);
        assert.deepEqual(statuses(second!), [200, 403]);
        // The chunked upload went on framed: the upstream read one request with the whole body.
        assert.deepEqual(JSON.parse((first![1] as { body: string }).body), { request: `POST /${tag}-upload HTTP/1.1`, body: "payload" });
        const log = (await rawLog()).filter((l) => l.includes(tag));
        assert.deepEqual(log, [`GET /${tag}-plain HTTP/1.1`, `POST /${tag}-upload HTTP/1.1`, `GET /${tag}-again HTTP/1.1`]);
        const seen = await eventsFor((e) => String(e.url).includes(tag), 5);
        const outcome = (path: string) => seen.filter((e) => String(e.url).includes(`/${tag}-${path}`)).map((e) => [e.status_code, e.blocked]);
        assert.deepEqual(outcome("plain"), [[200, false]]);
        assert.deepEqual(outcome("upload"), [[200, false]]);
        assert.deepEqual(outcome("again"), [[200, false]]);
        assert.deepEqual(outcome("smuggle"), [[400, true]]);
        assert.deepEqual(outcome("fronted"), [[403, true]]);
      });
    }
  });

  describe("TLS names and tunnels", () => {
    test("a TLS name the policy does not allow gets no certificate: the handshake fails, with an event", async () => {
      // The guest skips verification: the handshake fails only if the engine refuses it.
      const script = `import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
for name in sys.argv[1:]:
    try:
        ctx.wrap_socket(socket.create_connection(("${RAW_NAME}", 443), timeout=20), server_hostname=name).close(); print(name, "handshake")
    except (ssl.SSLError, OSError): print(name, "refused")
`;
      await client.writeFile("/tmp/sni.py", script);
      const r = await client.exec(`python3 /tmp/sni.py not-allowed-1.test ${RAW_NAME}`);
      assert.equal(r.stdout, `not-allowed-1.test refused\n${RAW_NAME} handshake\n`, r.stderr);
      await eventsFor((e) => e.host === "not-allowed-1.test" && e.blocked === true && e.block_reason === "host not in allowlist");
    });

    test("CONNECT is answered 403 with an event; nothing reaches the upstream", async () => {
      const [[answer]] = await raw([{ port: 80, requests: [`CONNECT ${RAW_NAME}:443 HTTP/1.1\r\nHost: ${RAW_NAME}:443\r\n\r\n`] }]);
      assert.deepEqual(answer, { status: 403, body: "Blocked by policy" });
      await eventsFor((e) => e.method === "CONNECT" && e.host === RAW_NAME && e.status_code === 403 && e.block_reason === "CONNECT tunnels are not offered");
      assert.deepEqual((await rawLog()).filter((l) => l.startsWith("CONNECT")), []);
    });
  });

  describe("a secret read back from its own host", () => {
    const loadedFrom = (r: FetchResult) => JSON.parse(r.body!) as { loaded: string; range: string | null };

    test("stored through a header or the query, loaded by a request without the placeholder: status, header and body show the placeholder", async () => {
      assert.equal((await fetch("https://secret.test/store?id=hdr", "X-Store:$API_KEY")).status, 200);
      assert.equal((await fetch("https://secret.test/store?id=qry&value=$API_KEY")).status, 200);
      // The attack is real: the upstream holds the value itself.
      for (const id of ["hdr", "qry"]) {
        const kept = (await (await globalThis.fetch(`http://${lab.serverIp}/load?id=${id}`)).json()) as { loaded: string };
        assert.equal(kept.loaded, SECRET, id);
      }
      for (const id of ["hdr", "qry"]) {
        const r = await fetch(`https://secret.test/load?id=${id}`);
        assert.equal(r.status, 200);
        assert.equal(loadedFrom(r).loaded, placeholder);
        assert.equal(r.headers!["x-loaded"], placeholder);
        assert.equal(r.reason, `Loaded ${placeholder}`);
        assert.ok(!JSON.stringify(r).includes(SECRET));
      }
    });

    test("compressed answers are decoded and scanned; a coding the proxy cannot decode is refused with an event", async () => {
      for (const enc of ["gzip", "deflate", "br"]) {
        const r = await fetch(`https://secret.test/load?id=hdr&enc=${enc}`, "Accept-Encoding:gzip, deflate, br");
        assert.equal(r.status, 200, enc);
        assert.equal(r.headers!["content-encoding"], undefined, enc);
        assert.equal(loadedFrom(r).loaded, placeholder, enc);
      }
      const z = await fetch("https://secret.test/load?id=hdr&enc=zstd");
      assert.equal(z.status, 502);
      assert.match(z.body!, /secret\.test answered in content coding zstd, which the proxy cannot scan for secrets/);
      assert.ok(!JSON.stringify(z).includes(SECRET));
      await eventsFor((e) => e.block_reason === UNSCANNABLE && String(e.url).includes("enc=zstd"));
    });

    test("a byte range cannot cut the value into pieces that escape the scan: the range is not passed on", async () => {
      const r = await fetch("https://secret.test/load?id=hdr", "Range:bytes=12-20");
      assert.equal(r.status, 200);
      assert.deepEqual(loadedFrom(r), { loaded: placeholder, range: null });
    });

    test("over plain HTTP and in websocket frames the value is turned back too", async () => {
      const plain = await fetch("http://secret.test/load?id=qry");
      assert.equal(loadedFrom(plain).loaded, placeholder);
      for (const port of [443, 80]) {
        const r = await ws("secret.test", port, "load:hdr");
        assert.equal(r.status, "HTTP/1.1 101 Switching Protocols", `port ${port}`);
        assert.equal(r.reply, placeholder, `port ${port}`);
      }
    });

    test("a raw TCP relay from a secret's host (server speaks first) is scanned too", async () => {
      const r = await client.exec(`python3 -c '
import socket
s = socket.create_connection(("secret.test", 7777), timeout=30)
got = b""
while b"echo-server" not in got: got += s.recv(100)
s.sendall(b"load:hdr\\n")
while not got.endswith(b"\\n") or b"loaded " not in got: got += s.recv(100)
print([l for l in got.decode().split("\\n") if l.startswith("loaded ")][0])'`);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.stdout, `loaded ${placeholder}\n`);
    });

    test("a server-sent event stream from a secret's host still streams event by event while it is scanned", async () => {
      await client.writeFile("/tmp/stream.py", STREAM_PY);
      const r = await client.exec("python3 /tmp/stream.py secret.test scanned");
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.stdout, "text/event-stream data: event 0 2 released\nchunked 5\n");
    });

    test("a secret's host may not be upgraded to a protocol the proxy cannot scan (h2c)", async () => {
      const r = await raw([{ host: "secret.test", port: 443, requests: ["GET / HTTP/1.1\r\nHost: secret.test\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"] }]);
      assert.equal((r[0]![0] as { status: number }).status, 403);
    });
  });

  describe("secrets over cleartext HTTP", () => {
    test("a placeholder going to its host over plain HTTP is refused (403, event), on :80 and through the sniffer (:8080)", async () => {
      for (const url of ["http://secret.test/echo?key=$API_KEY", "http://secret.test:8080/echo"]) {
        const r = await fetch(url, "Authorization:Bearer $API_KEY");
        assert.equal(r.status, 403, url);
        assert.equal(r.body, "Blocked by policy");
      }
      const blocked = await eventsFor((e) => e.block_reason === CLEARTEXT, 2);
      assert.ok(blocked.every((e) => e.host === "secret.test" && e.status_code === 403));
    });

    test("a secret that opted in is substituted over plain HTTP, its echo redacted", async () => {
      const r = await fetch("http://secret.test/echo?key=$PLAIN_KEY", "Authorization:Bearer $PLAIN_KEY");
      assert.equal(r.status, 200);
      const echoed = JSON.parse(r.body!) as { urlSha: string; authSha: string; headers: Record<string, string> };
      assert.equal(echoed.authSha, sha256(`Bearer ${PLAIN_SECRET}`));
      assert.equal(echoed.urlSha, sha256(`/echo?key=${PLAIN_SECRET}`));
      assert.equal(echoed.headers.authorization, `Bearer ${plainPlaceholder}`);
    });

    test("websocket frames over plain HTTP: the placeholder of a secret that did not opt in closes the connection unsent", async () => {
      const refused = await ws("secret.test", 80, "token=$API_KEY");
      assert.equal(refused.status, "HTTP/1.1 101 Switching Protocols");
      assert.equal(refused.reply, null);
      await eventsFor((e) => e.method === "WEBSOCKET" && e.block_reason === CLEARTEXT);
      const allowed = await ws("secret.test", 80, "token=$PLAIN_KEY");
      assert.equal((JSON.parse(allowed.reply!) as { sha: string }).sha, sha256(`token=${PLAIN_SECRET}`));
    });
  });

  describe("events and the engine's log show placeholders only", () => {
    test("a secret in the query and a header, and an upstream that fails: no event and no log line holds the value", async () => {
      const ok = await fetch("https://secret.test/echo?key=$API_KEY", "Authorization:Bearer $API_KEY");
      assert.equal(ok.status, 200);
      const failed = await fetch("https://secret.test/hangup?key=$API_KEY", "Authorization:Bearer $API_KEY");
      assert.equal(failed.status, 502);
      const [echo] = await eventsFor((e) => String(e.url).startsWith("https://secret.test/echo?key="));
      assert.equal(echo!.url, `https://secret.test/echo?key=${placeholder}`);
      // The failure is logged, with the URL as the guest wrote it.
      const logged = await eventually(async () => (readFileSync(engineLog, "utf8").includes(`/hangup?key=${placeholder}`) ? [] : ["waiting"]), 60_000);
      assert.deepEqual(logged, [], readFileSync(engineLog, "utf8"));
      const log = readFileSync(engineLog, "utf8");
      for (const value of [SECRET, PLAIN_SECRET]) {
        assert.ok(!log.includes(value), "the engine's log holds a secret's value");
        assert.ok(!JSON.stringify(events).includes(value), "an event holds a secret's value");
      }
    });
  });
});
