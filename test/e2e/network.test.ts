// The network seal end to end, on whichever engine $MATCHLOCK_BACKEND names (gVisor's veth or the
// micro-VM's tap, wired to the same DNS, proxy and firewall): a real sandbox, the engine's DNS and
// proxy, and real servers in a network namespace this test creates (test/helpers/net-lab.ts).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Sandbox, type Client } from "../../src/sdk/index.js";
import { createHash } from "node:crypto";
import { newClient, PYTHON, setUpE2E } from "../helpers/e2e.js";
import { STREAM_PY, WS_PY, type WsResult } from "../helpers/guest-net-scripts.js";
import { startNetLab, type NetLab } from "../helpers/net-lab.js";

const sha256 = (v: string) => createHash("sha256").update(v).digest("hex");
const SECRET = "sk-real-value-7f3a9c";

/** A guest-side client: prints {"status", "body"} or {"error"} for one request. */
const FETCH_PY = `
import json, sys, urllib.request, urllib.error
url = sys.argv[1]
headers = dict(h.split(":", 1) for h in sys.argv[2:])
try:
    r = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=20)
    print(json.dumps({"status": r.status, "body": r.read().decode("latin-1")}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": e.read().decode("latin-1")}))
except Exception as e:
    print(json.dumps({"error": type(e).__name__ + ": " + str(e)}))
`;

interface Fetched { status?: number; body?: string; error?: string }

describe("network seal", () => {
  let lab: NetLab;
  let client: Client;
  const events: Array<Record<string, unknown>> = [];

  const fetch = async (url: string, ...headers: string[]): Promise<Fetched> => {
    const args = [url, ...headers].map((a) => `'${a}'`).join(" ");
    const r = await client.exec(`python3 /tmp/fetch.py ${args}`);
    assert.equal(r.exitCode, 0, r.stderr);
    return JSON.parse(r.stdout) as Fetched;
  };

  before(async () => {
    await setUpE2E();
    lab = await startNetLab();
    client = newClient();
    client.onEvent((e) => events.push(e as unknown as Record<string, unknown>));
    // The lab's servers live on private addresses (10.x in the test's own netns), which the SDK
    // blocks by default: open private ranges for this suite; the next one tests the blocking.
    await client.launch(
      new Sandbox(PYTHON).allowHost("Allowed.test", "*.wild.test").addSecret("API_KEY", SECRET, "secret.test").allowPrivateIPs(),
    );
    await client.writeFile("/tmp/fetch.py", FETCH_PY);
    await client.writeFile("/tmp/ws.py", WS_PY);
  });
  after(async () => {
    await client?.close();
    await client?.remove();
    await lab?.stop();
  });

  test("an allowed host is reached over HTTP and HTTPS (TLS intercepted, trusted by the guest)", async () => {
    assert.deepEqual(await fetch("http://allowed.test/hello"), { status: 200, body: "hello from allowed.test\n" });
    assert.deepEqual(await fetch("https://allowed.test/hello"), { status: 200, body: "hello from allowed.test\n" });
    assert.deepEqual(await fetch("https://sub.wild.test/hello"), { status: 200, body: "hello from sub.wild.test\n" });
  });

  test("a host not allowed gets NXDOMAIN from the engine's DNS", async () => {
    const r = await client.exec(`python3 -c 'import socket; socket.gethostbyname("other.test")'`);
    assert.notEqual(r.exitCode, 0);
    assert.match(r.stderr, /Name or service not known|nodename nor servname/);
    assert.match((await fetch("https://exfil-data-1234.other.test/")).error ?? "", /URLError/);
  });

  test("a direct connection to an IP address goes nowhere", async () => {
    // Dropped, not refused: a short timeout says as much as a long one.
    const r = await client.exec(`python3 -c '
import socket
t = socket.socket(); t.settimeout(3)
try: t.connect(("${lab.serverIp}", 80)); print("connected")
except OSError as e: print("failed")'`);
    assert.equal(r.stdout, "failed\n", r.stderr);
  });

  test("Host header of a forbidden name on an allowed name's address is refused with 403", async () => {
    const r = await fetch("http://allowed.test/hello", "Host:other.test");
    assert.equal(r.status, 403);
    assert.equal(r.body, "Blocked by policy");
    assert.ok(events.some((e) => (e.network as Record<string, unknown>)?.blocked === true));
  });

  test("the secret is replaced for its host, in headers and query, and an echo of it is redacted", async () => {
    const r = await client.exec(`python3 /tmp/fetch.py "https://secret.test/echo?key=$API_KEY" "Authorization:Bearer $API_KEY"`);
    const seen = JSON.parse(r.stdout) as Fetched;
    const echoed = JSON.parse(seen.body!) as { url: string; headers: Record<string, string>; urlSha: string; authSha: string };
    // What the server received: the real value, in the query and the header.
    assert.equal(echoed.urlSha, sha256(`/echo?key=${SECRET}`));
    assert.equal(echoed.authSha, sha256(`Bearer ${SECRET}`));
    // What the guest got back: the server's echo, with the value turned back into the placeholder.
    assert.ok(!seen.body!.includes(SECRET));
    assert.match(echoed.headers.authorization!, /^Bearer SANDBOX_SECRET_[0-9a-f]{32}$/);
    assert.match(echoed.url, /^\/echo\?key=SANDBOX_SECRET_[0-9a-f]{32}$/);
  });

  test("the secret is not replaced in the path", async () => {
    const r = await client.exec(`python3 /tmp/fetch.py "https://secret.test/echo/$API_KEY"`);
    assert.equal(JSON.parse(r.stdout).status, 404); // the server saw the placeholder path, not the value
  });

  test("the secret's placeholder to another allowed host is blocked with 403 and an event", async () => {
    const r = await client.exec(`python3 /tmp/fetch.py "https://allowed.test/echo" "Authorization:Bearer $API_KEY"`);
    assert.deepEqual(JSON.parse(r.stdout), { status: 403, body: "Blocked by policy" });
    assert.ok(events.some((e) => (e.network as Record<string, unknown>)?.block_reason === "secret placeholder sent to unauthorized host"));
  });

  test("the real secret value is nowhere the guest can read", async () => {
    const env = await client.exec("env; cat /proc/self/environ /proc/1/environ 2>/dev/null | tr '\\0' '\\n'");
    assert.match(env.stdout, /API_KEY=SANDBOX_SECRET_[0-9a-f]{32}/);
    assert.ok(!env.stdout.includes(SECRET));
    // pagemap and mem: endless or unreadable on a real kernel (the micro-VM's), nothing to find there.
    const grep = await client.exec(`grep -rlE --exclude=pagemap --exclude=mem '${SECRET.slice(0, -1)}[${SECRET.slice(-1)}]' /etc /tmp /root /workspace /proc/self 2>/dev/null; echo done`);
    assert.equal(grep.stdout, "done\n");
  });

  test("a redirect to a forbidden host is passed back, and following it goes nowhere", async () => {
    const r = await client.exec(`python3 -c '
import urllib.request, http.client
c = http.client.HTTPSConnection("allowed.test", timeout=20)
c.request("GET", "/redirect?to=https://other.test/steal")
r = c.getresponse(); print(r.status, r.getheader("Location"))'`);
    assert.equal(r.stdout, "302 https://other.test/steal\n");
    assert.match((await fetch("https://allowed.test/redirect?to=https://other.test/steal")).error ?? "", /URLError/);
  });

  test("HTTP/1.1 keep-alive: several requests on one guest connection", async () => {
    const r = await client.exec(`python3 -c '
import http.client, json
c = http.client.HTTPSConnection("allowed.test", timeout=20)
ids = []
for i in range(3):
    c.request("GET", "/echo"); ids.append(json.loads(c.getresponse().read())["socket"])
print(len(ids), len(set(ids)))'`);
    assert.equal(r.exitCode, 0, r.stderr);
    // Three answers over one guest connection; the proxy also reused one upstream connection.
    assert.equal(r.stdout, "3 1\n");
  });

  test("chunked and server-sent-event bodies stream through, chunk by chunk", async () => {
    await client.writeFile("/tmp/stream.py", STREAM_PY);
    const r = await client.exec("python3 /tmp/stream.py allowed.test s1");
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, "text/event-stream data: event 0 2 released\nchunked 5\n");
  });

  const ws = async (host: string, port: number, tls: boolean, splits: string, text: string): Promise<WsResult> => {
    const r = await client.exec(`python3 /tmp/ws.py ${host} ${port} ${tls ? 1 : 0} ${splits} "${text}"`);
    assert.equal(r.exitCode, 0, r.stderr);
    return JSON.parse(r.stdout) as WsResult;
  };
  const wsReply = (r: WsResult) => JSON.parse(r.reply ?? "null") as { text: string; sha: string; extensions: string | null } | null;

  test("a websocket to an allowed host works, compression is not negotiated (frames must stay readable)", async () => {
    for (const [port, tls] of [[443, true], [80, false], [8080, false]] as const) {
      const r = await ws("allowed.test", port, tls, "2,5", "hello websocket");
      assert.equal(r.status, "HTTP/1.1 101 Switching Protocols", `port ${port}`);
      assert.deepEqual({ ...wsReply(r), sha: undefined }, { text: "hello websocket", sha: undefined, extensions: null, binary: false, host: "allowed.test" });
    }
  });

  test("websocket frames: the placeholder is replaced for the secret's host, even split across fragments and with a new frame length", async () => {
    // 6 + 47 + 5 bytes: the first cut falls inside the placeholder.
    const split = await ws("secret.test", 443, true, "16,30", "token=$API_KEY end!");
    assert.equal(split.status, "HTTP/1.1 101 Switching Protocols");
    assert.equal(wsReply(split)!.sha, sha256(`token=${SECRET} end!`)); // what the server got
    assert.match(wsReply(split)!.text, /^token=SANDBOX_SECRET_[0-9a-f]{32} end!$/); // its echo, redacted
    assert.ok(!split.reply!.includes(SECRET));
    // 100 + 47 bytes: a 16-bit length on the way in, a 7-bit one once the value is in.
    const pad = "x".repeat(100);
    const long = await ws("secret.test", 8443, true, "-", `${pad}$API_KEY`);
    assert.equal(wsReply(long)!.sha, sha256(`${pad}${SECRET}`));
    assert.ok(!long.reply!.includes(SECRET));
  });

  test("websocket frames: the placeholder to another host closes the connection unsent, with an event", async () => {
    const before = events.length;
    const r = await ws("allowed.test", 443, true, "20", "Bearer $API_KEY");
    assert.equal(r.status, "HTTP/1.1 101 Switching Protocols");
    assert.equal(r.reply, null);
    const blocked = events.slice(before).map((e) => e.network as Record<string, unknown>).find((n) => n?.blocked === true);
    assert.equal(blocked?.block_reason, "secret placeholder sent to unauthorized host");
    assert.equal(blocked?.host, "allowed.test");
  });

  test("an upgrade's answer is redacted too, and a request with a secret may upgrade to websocket only", async () => {
    // The lab's websocket server echoes the first subprotocol offered: here, the secret.
    const head = async (upgrade: string) => (await client.exec(`python3 -c '
import socket, ssl, sys
s = ssl.create_default_context().wrap_socket(socket.create_connection(("secret.test", 443), timeout=20), server_hostname="secret.test")
s.sendall(("GET /ws HTTP/1.1\\r\\nHost: secret.test\\r\\nUpgrade: " + sys.argv[1] + "\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n"
  "Sec-WebSocket-Version: 13\\r\\nSec-WebSocket-Protocol: " + sys.argv[2] + "\\r\\n\\r\\n").encode())
h = b""
while b"\\r\\n\\r\\n" not in h:
    c = s.recv(1)
    if not c: break
    h += c
print(h.decode("latin-1"))' ${upgrade} "$API_KEY"`)).stdout;
    const ws = await head("websocket");
    assert.match(ws, /^HTTP\/1\.1 101 /);
    assert.match(ws, /Sec-WebSocket-Protocol: SANDBOX_SECRET_[0-9a-f]{32}\r\n/i);
    assert.ok(!ws.includes(SECRET), ws);
    const h2c = await head("h2c");
    assert.match(h2c, /^HTTP\/1\.1 403 /);
  });

  test("a DNS query to any other resolver address is answered by the engine", async () => {
    // 192.0.2.53 is TEST-NET-1: the query is DNAT'ed on the host end of the link and never leaves.
    const r = await client.exec(`python3 -c '
import socket, struct
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\\x07allowed\\x04test\\x00" + struct.pack(">HH", 1, 1)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
u.sendto(q, ("192.0.2.53", 53)); a = u.recvfrom(512)[0]
print(a[3] & 15, struct.unpack(">H", a[6:8])[0], socket.inet_ntoa(a[-4:]).startswith("10.201."))'`);
    assert.equal(r.stdout, "0 1 True\n", r.stderr);
  });

  test("raw TCP to another port of an allowed name is relayed, server-first and client-first", async () => {
    const r = await client.exec(`python3 -c '
import socket
s = socket.create_connection(("allowed.test", 7777), timeout=10)
banner = s.recv(100)
s.sendall(b"ping 1\\n"); echo = s.recv(100)
c = socket.create_connection(("allowed.test", 7777), timeout=10)
c.sendall(b"quick\\n"); got = b""
while got.count(b"\\n") < 2: got += c.recv(100)
print(banner.decode().strip(), echo.decode().strip(), got.decode().split())'`);
    assert.equal(r.stdout, "echo-server ping 1 ['echo-server', 'quick']\n", r.stderr);
    assert.ok(events.some((e) => (e.network as Record<string, unknown>)?.url === "tcp://allowed.test:7777"));
  });

  test("raw TCP to any other address or port is refused", async () => {
    // The lab's own address, an address our DNS never handed out, and an allowed name's closed port.
    const r = await client.exec(`python3 -c '
import socket
for host, port in (("${lab.serverIp}", 7777), ("10.201.255.254", 7777), ("allowed.test", 7778)):
    try:
        s = socket.create_connection((host, port), timeout=3); s.settimeout(3); s.sendall(b"x\\n")
        print("answered" if s.recv(100) else "closed")
    except OSError as e: print("refused")'`);
    // Dropped (a timeout), or accepted by the engine and reset at once: never an answer.
    assert.deepEqual(r.stdout.trim().split("\n").map((l) => (l === "closed" ? "refused" : l)), ["refused", "refused", "refused"], r.stderr);
  });

  test("HTTP on :8080 and HTTPS on :8443 are intercepted like 80/443, the secret replaced for its host only, and over TLS only", async () => {
    assert.deepEqual(await fetch("http://allowed.test:8080/hello"), { status: 200, body: "hello from allowed.test:8080\n" });
    assert.deepEqual(await fetch("https://allowed.test:8443/hello"), { status: 200, body: "hello from allowed.test:8443\n" });
    const url = "https://secret.test:8443/echo";
    const seen = JSON.parse((await client.exec(`python3 /tmp/fetch.py "${url}?key=$API_KEY" "Authorization:Bearer $API_KEY"`)).stdout) as Fetched;
    const echoed = JSON.parse(seen.body!) as { urlSha: string; authSha: string };
    assert.equal(echoed.authSha, sha256(`Bearer ${SECRET}`), url);
    assert.equal(echoed.urlSha, sha256(`/echo?key=${SECRET}`), url);
    assert.ok(!seen.body!.includes(SECRET));
    // Plain HTTP on :8080 is cleartext like :80: this secret did not opt in (network-proxy-attacks.test.ts has the rest).
    const plain = await client.exec(`python3 /tmp/fetch.py "http://secret.test:8080/echo?key=$API_KEY"`);
    assert.deepEqual(JSON.parse(plain.stdout), { status: 403, body: "Blocked by policy" });
    const r = await client.exec(`python3 /tmp/fetch.py "https://allowed.test:8443/echo" "Authorization:Bearer $API_KEY"`);
    assert.deepEqual(JSON.parse(r.stdout), { status: 403, body: "Blocked by policy" });
    // The Host header must name what was dialled: no fronting on another port either.
    assert.equal((await fetch("http://allowed.test:8080/hello", "Host:sub.wild.test:8080")).status, 403);
  });

  test("a slow client on :8443 (2 s between connect and ClientHello) is still intercepted, the secret replaced", async () => {
    const r = await client.exec(`python3 -c '
import http.client, json, socket, ssl, sys, time
s = socket.create_connection(("secret.test", 8443), timeout=20)
time.sleep(2)
s = ssl.create_default_context().wrap_socket(s, server_hostname="secret.test")
s.sendall(b"GET /echo HTTP/1.1\\r\\nHost: secret.test:8443\\r\\nAuthorization: Bearer " + sys.argv[1].encode() + b"\\r\\nConnection: close\\r\\n\\r\\n")
r = http.client.HTTPResponse(s); r.begin()
issuer = dict(rdn[0] for rdn in s.getpeercert()["issuer"])["commonName"]
print(json.dumps({"issuer": issuer, "authSha": json.loads(r.read())["authSha"]}))' "$API_KEY"`);
    assert.equal(r.exitCode, 0, r.stderr);
    const { issuer, authSha } = JSON.parse(r.stdout) as { issuer: string; authSha: string };
    assert.equal(authSha, sha256(`Bearer ${SECRET}`), "the server got the real value: the request went through the proxy");
    assert.match(issuer, /^Matchlock sandbox CA /, "the guest saw the sandbox CA's leaf, not the server's own certificate");
  });

  test("UDP other than DNS is dropped, whatever the address", async () => {
    const r = await client.exec(`python3 -c '
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)
for host in ("${lab.serverIp}", socket.gethostbyname("allowed.test")):
    u.sendto(b"from-guest", (host, 9999))
try: u.recvfrom(10); print("udp answered")
except socket.timeout: print("udp dropped")'`);
    assert.equal(r.stdout, "udp dropped\n", r.stderr);
    // And the lab's UDP sink (reached from the host side here) really got nothing.
    assert.deepEqual(await (await globalThis.fetch(`http://${lab.serverIp}/udp-log`)).json(), []);
  });

  test("a 100 MB download over HTTPS arrives whole", async () => {
    const r = await client.exec(`python3 -c '
import urllib.request, hashlib, time
t = time.time(); h = hashlib.sha256(); n = 0
with urllib.request.urlopen("https://allowed.test/big?mb=100", timeout=120) as r:
    while True:
        b = r.read(1 << 20)
        if not b: break
        n += len(b); h.update(b)
print(n, h.hexdigest()[:16], round(n / (time.time() - t) / 1e6, 1))'`);
    assert.equal(r.exitCode, 0, r.stderr);
    const [bytes, digest, mbps] = r.stdout.trim().split(" ");
    assert.equal(Number(bytes), 100 * 1024 * 1024);
    assert.equal(digest, "cee41e98d0a6ad65"); // sha256 of 100 MiB of "a", first 16 hex
    process.stderr.write(`# 100 MB HTTPS download through the proxy: ${mbps} MB/s\n`);
  });
});
