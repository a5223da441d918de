// One sandbox's share of the host's connections, on whichever engine $MATCHLOCK_BACKEND names:
// a guest that opens connections without end is held to its limit of open connections in the
// engine (reset beyond it, with an event) while another sandbox of the same resident engine goes
// on working; its UDP flows and its new connections per second are bounded in its nft table, so
// it cannot fill the host's conntrack table. Low limits are set for the test through the engine's
// environment (MATCHLOCK_NET_MAX_CONNECTIONS, MATCHLOCK_NET_CONNECTION_RATE); the bursts are
// bounded, and each bound is far from both the limit and the burst.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Client, Sandbox } from "../../src/sdk/index.js";
import { CLI, eventually, newClient, PYTHON, setUpE2E } from "../helpers/e2e.js";
import { startNetLab, type NetLab } from "../helpers/net-lab.js";
import { startServer, type Server } from "../helpers/resident.js";

const MAX_CONNECTIONS = 16;
const CONNECTIONS_REASON = "too many open connections from this sandbox";

/**
 * hold.py N: opens N connections to allowed.test:80 (resolved once), asks for /hello on each,
 * tries one more while all are open, writes what it saw to /tmp/holding and keeps them open
 * until /tmp/go exists.
 */
const HOLD_PY = `
import json, os, socket, sys, time
ip = socket.gethostbyname("allowed.test")
def ask(s):
    try:
        s.sendall(b"GET /hello HTTP/1.1\\r\\nHost: allowed.test\\r\\n\\r\\n")
        return s.recv(200).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
def connect():
    try:
        return socket.create_connection((ip, 80), timeout=30)
    except OSError:
        return None
conns = [connect() for _ in range(int(sys.argv[1]))]
answered = sum(1 for s in conns if s is not None and ask(s))
extra = connect()
seen = {"answered": answered, "refused": len(conns) - answered, "one_more": "answered" if extra is not None and ask(extra) else "refused"}
open("/tmp/holding", "w").write(json.dumps(seen))
while not os.path.exists("/tmp/go"):
    time.sleep(0.1)
print(json.dumps(seen))
`;

/** burst.py TCP UDP: TCP connections to allowed.test:80 one after another (closed at once), then UDP DNS queries from as many sockets. */
const BURST_PY = `
import json, select, socket, struct, sys, time
ip = socket.gethostbyname("allowed.test")
tcp, udp = int(sys.argv[1]), int(sys.argv[2])
connected = 0
for _ in range(tcp):
    try:
        socket.create_connection((ip, 80), timeout=30).close()
        connected += 1
    except OSError:
        pass
server = [l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver")][0]
query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"".join(bytes([len(p)]) + p for p in (b"allowed", b"test")) + b"\\0" + struct.pack(">HH", 1, 1)
pending, answered = [], 0
for _ in range(udp):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((server, 53))
    try:
        s.send(query)
        pending.append(s)
    except OSError:
        pass
# Answers come at once; refused queries get an ICMP error or nothing. Wait until all are settled, or 20 s without news.
deadline = time.time() + 20
while pending and time.time() < deadline:
    ready, _, _ = select.select(pending, [], [], max(0, deadline - time.time()))
    for s in ready:
        pending.remove(s)
        try:
            s.recv(512)
            answered += 1
        except OSError:
            pass
    if ready:
        deadline = time.time() + 20
print(json.dumps({"tcp_connected": connected, "udp_answered": answered}))
`;

/** Fetches http://allowed.test/hello until it works (the limits let normal use through again). */
const RECOVER_PY = `
import time, urllib.request
for _ in range(300):
    try:
        print(urllib.request.urlopen("http://allowed.test/hello", timeout=10).read().decode(), end="")
        break
    except Exception:
        time.sleep(1)
`;

describe("network seal: per-sandbox connection limits", () => {
  let lab: NetLab;
  let server: Server;
  const clients: Client[] = [];

  const launch = async (client: Client, events?: Array<Record<string, unknown>>): Promise<Client> => {
    clients.push(client);
    if (events) client.onEvent((e) => events.push((e as unknown as { network?: Record<string, unknown> }).network ?? {}));
    await client.launch(new Sandbox(PYTHON).allowHost("allowed.test").allowPrivateIPs());
    for (const [name, text] of [["hold.py", HOLD_PY], ["burst.py", BURST_PY], ["recover.py", RECOVER_PY]] as const) await client.writeFile(`/tmp/${name}`, text);
    return client;
  };
  const json = async (client: Client, command: string): Promise<Record<string, unknown>> => {
    const r = await client.exec(command);
    assert.equal(r.exitCode, 0, r.stderr);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };

  before(async () => {
    const home = await setUpE2E();
    lab = await startNetLab();
    server = await startServer(join(home, "run", "engine.sock"), { MATCHLOCK_NET_MAX_CONNECTIONS: String(MAX_CONNECTIONS) });
  });
  after(async () => {
    for (const c of clients) {
      await c.close().catch(() => {});
      await c.remove().catch(() => {});
    }
    await server?.stop();
    await lab?.stop();
  });

  test("a sandbox holding its limit of open connections gets further ones reset, with an event; its neighbour works", async () => {
    const events: Array<Record<string, unknown>> = [];
    const greedy = await launch(new Client({ engineSocket: server.socketPath, binaryPath: CLI }), events);
    const neighbour = await launch(new Client({ engineSocket: server.socketPath, binaryPath: CLI }));
    const held = greedy.exec(`python3 /tmp/hold.py ${3 * MAX_CONNECTIONS}`);
    // The greedy guest now holds its connections open (a gate file, not a sleep).
    assert.deepEqual(await eventually(async () => ((await greedy.exec("test -f /tmp/holding")).exitCode === 0 ? [] : ["not yet"]), 600_000), []);
    assert.equal((await neighbour.exec("python3 /tmp/recover.py")).stdout, "hello from allowed.test\n");
    await greedy.writeFile("/tmp/go", "");
    const r = await held;
    assert.equal(r.exitCode, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { answered: MAX_CONNECTIONS, refused: 2 * MAX_CONNECTIONS, one_more: "refused" });
    assert.ok(events.some((e) => e.blocked === true && e.block_reason === CONNECTIONS_REASON), JSON.stringify(events));
    // Once they are closed, the same sandbox connects again.
    assert.equal((await greedy.exec("python3 /tmp/recover.py")).stdout, "hello from allowed.test\n");
  });

  test("its UDP flows are capped in its nft table: a burst of DNS queries from fresh sockets is mostly refused", async (t) => {
    const greedy = clients[0]!;
    const sent = 100;
    const seen = await json(greedy, `python3 /tmp/burst.py 0 ${sent}`);
    const answered = seen.udp_answered as number;
    t.diagnostic(`${sent} queries sent: ${JSON.stringify(seen)}`);
    // Twice MAX_CONNECTIONS flows may be tracked at once; the rate limit (100/s, bursts of 200) does not bite here.
    assert.ok(answered >= 1 && answered <= 2 * MAX_CONNECTIONS, JSON.stringify(seen));
  });

  test("new connections and flows per second are limited: a burst is mostly refused, normal use goes on", async (t) => {
    // Its own engine, started with a rate of 2 per second (bursts of 4).
    process.env.MATCHLOCK_NET_CONNECTION_RATE = "2";
    let slow: Client;
    try {
      slow = await launch(newClient());
    } finally {
      delete process.env.MATCHLOCK_NET_CONNECTION_RATE;
    }
    const burst = 100;
    const seen = await json(slow, `python3 /tmp/burst.py ${burst} ${burst}`);
    const connected = seen.tcp_connected as number;
    const answered = seen.udp_answered as number;
    t.diagnostic(`${burst} connections and ${burst} queries: ${JSON.stringify(seen)}`);
    // At 2 per second a guest would need 25 s of connecting to get half of them through.
    assert.ok(connected >= 1 && connected <= burst / 2, JSON.stringify(seen));
    assert.ok(answered <= burst / 2, JSON.stringify(seen));
    assert.equal((await slow.exec("python3 /tmp/recover.py")).stdout, "hello from allowed.test\n");
  });
});
