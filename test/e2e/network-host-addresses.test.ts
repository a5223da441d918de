// The host's own addresses are never a destination, on whichever engine $MATCHLOCK_BACKEND names.
// The test gives the host an address of its own that is in no private range (TEST-NET-3 and an
// IPv6 documentation address, on a veth pair left in the host's namespace), runs a service on
// 0.0.0.0/:: (any address of the host), and maps test names to those addresses and to loopback.
// With allowHost("*"), private addresses blocked or not, the guest must reach none of it: 403 or
// a reset on every port and path (proxy, TLS, sniffed HTTP, raw relay), an event saying why,
// and not one connection at the service.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { appendFile } from "node:fs/promises";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { Sandbox, type Client } from "../../src/sdk/index.js";
import { newClient, PYTHON, setUpE2E } from "../helpers/e2e.js";
import { startNetLab, type NetLab } from "../helpers/net-lab.js";

const exec = promisify(execFile);
const HOST_ADDRESS_REASON = "destination is an address of the engine's own host";

/** Tries each name on every path: proxy (80), TLS (443), sniffed HTTP and raw bytes (the service's port). */
const PROBE_PY = `
import json, socket, sys, urllib.request, urllib.error
port = int(sys.argv[1])
def fetch(url):
    try:
        r = urllib.request.urlopen(url, timeout=30)
        return "%d %s" % (r.status, r.read().decode())
    except urllib.error.HTTPError as e:
        return "%d %s" % (e.code, e.read().decode())
    except Exception as e:
        return "error " + type(e).__name__
def talk(name, payload):
    try:
        s = socket.create_connection((name, port), timeout=30)
        s.sendall(payload)
        data = s.recv(100)
        return ("answered " + data.decode("latin-1")) if data else "refused"
    except OSError:
        return "refused"
out = {}
for n in sys.argv[2:]:
    out[n] = {
        "http": fetch("http://%s/" % n),
        "https": fetch("https://%s/" % n),
        "sniffed-http": talk(n, b"GET / HTTP/1.1\\r\\nHost: " + n.encode() + b"\\r\\n\\r\\n"),
        "raw": talk(n, b"hello\\n"),
    }
print(json.dumps(out))
`;

const REFUSED = { http: "403 Blocked by policy", https: "403 Blocked by policy", "sniffed-http": "refused", raw: "refused" };

describe("network seal: the host's own addresses", () => {
  let lab: NetLab;
  let service: net.Server;
  let port: number;
  let reached = 0;
  const tag = Math.floor(Math.random() * 0xffff).toString(16).padStart(4, "0");
  const hostLink = `mlself${tag}`;
  const v4 = `203.0.113.${2 + Math.floor(Math.random() * 250)}`;
  const v6 = `2001:db8:${tag}::1`;
  const clients: Client[] = [];
  const events: Array<{ host?: string; url?: string; blocked?: boolean; block_reason?: string }> = [];

  const launch = async (sandbox: Sandbox): Promise<Client> => {
    const client = newClient();
    clients.push(client);
    client.onEvent((e) => events.push((e as unknown as { network: (typeof events)[number] }).network ?? {}));
    await client.launch(sandbox);
    await client.writeFile("/tmp/probe.py", PROBE_PY);
    return client;
  };
  const probe = async (client: Client, names: string[]) => {
    const r = await client.exec(`python3 /tmp/probe.py ${port} ${names.join(" ")}`);
    assert.equal(r.exitCode, 0, r.stderr);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };

  before(async () => {
    await setUpE2E();
    lab = await startNetLab();
    await removeAbandonedLinks();
    await exec("ip", ["link", "add", hostLink, "type", "veth", "peer", "name", `mlselp${tag}`]);
    await exec("ip", ["addr", "add", `${v4}/32`, "dev", hostLink]);
    await exec("ip", ["-6", "addr", "add", `${v6}/128`, "dev", hostLink, "nodad"]);
    await exec("ip", ["link", "set", hostLink, "up"]);
    service = net.createServer((s) => {
      reached++;
      s.on("error", () => s.destroy());
      s.once("data", () => s.end("HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nhost service\n"));
    });
    await new Promise<void>((resolve) => service.listen(0, "::", resolve)); // every address of the host, both families
    port = (service.address() as net.AddressInfo).port;
    await appendFile(lab.hostsFile, `${v4} hostself.test\n${v6} hostself6.test\n127.0.0.1 loop.test\n::1 loop6.test\n`);
  });
  after(async () => {
    for (const c of clients) {
      await c.close();
      await c.remove();
    }
    service?.close();
    await exec("ip", ["link", "del", hostLink]).catch(() => {});
    await lab?.stop();
  });

  test("the service really is on those addresses: the host itself reaches it", async () => {
    for (const host of [v4, v6]) {
      const reply = await new Promise<string>((resolve, reject) => {
        const s = net.connect({ host, port }, () => s.write("GET / HTTP/1.1\r\n\r\n"));
        let got = "";
        s.on("data", (d) => (got += d)).on("end", () => resolve(got)).on("error", reject);
      });
      assert.match(reply, /host service/);
    }
    reached = 0;
  });

  test("allowHost('*') with private addresses blocked: a name on a public address of the host is refused everywhere", async () => {
    const client = await launch(new Sandbox(PYTHON).allowHost("*"));
    const seen = await probe(client, ["hostself.test", "hostself6.test"]);
    assert.deepEqual(seen, { "hostself.test": REFUSED, "hostself6.test": REFUSED });
    assert.equal(reached, 0, "no connection reached the host's service");
    for (const host of ["hostself.test", "hostself6.test"]) {
      const mine = events.filter((e) => e.host === host && e.blocked);
      assert.ok(mine.some((e) => e.block_reason === HOST_ADDRESS_REASON && e.url === `http://${host}/`), JSON.stringify(mine));
      assert.ok(mine.some((e) => e.block_reason === HOST_ADDRESS_REASON && e.url === `tcp://${host}:${port}`), JSON.stringify(mine));
    }
  });

  test("with private addresses open too, the host's addresses and loopback stay refused", async () => {
    const client = await launch(new Sandbox(PYTHON).allowHost("*").allowPrivateIPs());
    const names = ["hostself.test", "loop.test", "loop6.test"];
    const seen = await probe(client, names);
    assert.deepEqual(seen, Object.fromEntries(names.map((n) => [n, REFUSED])));
    assert.equal(reached, 0, "no connection reached the host's service");
    assert.ok(events.some((e) => e.host === "loop.test" && e.block_reason === HOST_ADDRESS_REASON));
  });
});

describe("the host's own addresses where any address can be bound (ip_nonlocal_bind)", () => {
  test("the routing table is asked instead: the namespace's own address is local; one routed elsewhere or unroutable is not", async () => {
    // In a network namespace of its own, so the host's setting is left alone.
    const ns = `mlnonlocal-${Math.floor(Math.random() * 0xffff).toString(16)}`;
    await exec("ip", ["netns", "add", ns]);
    try {
      await exec("ip", ["-n", ns, "addr", "add", "203.0.113.5/32", "dev", "lo"]);
      await exec("ip", ["-n", ns, "link", "set", "lo", "up"]);
      await exec("ip", ["-n", ns, "route", "add", "198.51.100.0/24", "dev", "lo"]);
      await exec("ip", ["netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1"]);
      const module = new URL("../../src/engine/net/host-addresses.js", import.meta.url).href;
      const script = `const { isHostAddress } = await import(${JSON.stringify(module)});
        console.log(JSON.stringify(await Promise.all(["203.0.113.5", "198.51.100.7", "203.0.113.6"].map(isHostAddress))));`;
      const { stdout } = await exec("ip", ["netns", "exec", ns, process.execPath, "--input-type=module", "-e", script]);
      assert.deepEqual(JSON.parse(stdout), [true, false, false]);
    } finally {
      await exec("ip", ["netns", "del", ns]).catch(() => {});
    }
  });
});

/** Address links of runs that were killed (this file's names only). */
async function removeAbandonedLinks(): Promise<void> {
  const { stdout } = await exec("ip", ["-o", "link", "show"]);
  for (const m of stdout.matchAll(/^\d+: (mlself[0-9a-f]{4})[@:]/gm)) await exec("ip", ["link", "del", m[1]!]).catch(() => {});
}
