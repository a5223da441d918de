// The network's runtime allow-list (spec 5.5) and the guest's own names and link (spec 5.2:
// add_hosts, hostname, mtu, no_network), end to end on whichever engine $MATCHLOCK_BACKEND names.
// One sandbox, in a resident engine so that the CLI reaches it too, serves the SDK's and the CLI's
// allow-list changes; requests go to servers in a network namespace this test makes
// (test/helpers/net-lab.ts). A second, quick one is a `matchlock run --no-network`.
import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Client, MatchlockError, RPCError, Sandbox } from "../../src/sdk/index.js";
import { BUSYBOX, CLI, cli, PYTHON, setUpE2E } from "../helpers/e2e.js";
import { FETCH_PY, type FetchResult } from "../helpers/guest-net-scripts.js";
import { startNetLab, type NetLab } from "../helpers/net-lab.js";
import { SocketSession, startServer, type Server } from "../helpers/resident.js";

// Python, so that the guest's resolver (glibc: /etc/hosts, then the engine's DNS) answers.
const RESOLVE_PY = `
import socket, sys
try: print(socket.gethostbyname(sys.argv[1]))
except OSError as e: print("unresolved", type(e).__name__)
`;
// The MTU of every interface but loopback, asked of the kernel (gVisor's sysfs may list none).
const MTU_PY = `
import fcntl, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _, name in socket.if_nameindex():
    if name != "lo":
        print(struct.unpack("16si", fcntl.ioctl(s, 0x8921, struct.pack("16si", name.encode(), 0)))[1])
`;

describe("network at runtime: allow-list, hosts, hostname, mtu", () => {
  let lab: NetLab;
  let server: Server;
  let client: Client;
  let id: string;

  const py = async (script: string, ...args: string[]) => {
    const r = await client.exec(`python3 ${script} ${args.map((a) => `'${a}'`).join(" ")}`);
    assert.equal(r.exitCode, 0, r.stderr);
    return r.stdout.trim();
  };
  const fetch = async (url: string, ...headers: string[]) => JSON.parse(await py("/tmp/fetch.py", url, ...headers)) as FetchResult;

  before(async () => {
    await setUpE2E();
    lab = await startNetLab();
    // Started after the lab, so that the engine resolves the lab's names.
    server = await startServer(join(await mkdtemp(join(tmpdir(), "matchlock-netrt-")), "engine.sock"));
    client = new Client({ binaryPath: CLI, engineSocket: server.socketPath });
    id = await client.launch(
      new Sandbox(PYTHON).withNetworkInterception().allowPrivateIPs() // the lab lives on 10.254.x.x
        .addHost("db.internal", "10.9.8.7").addHost("v6.internal", "fd00::7").withHostname("box-1").withNetworkMTU(1400),
    );
    await client.writeFile("/tmp/fetch.py", FETCH_PY);
    await client.writeFile("/tmp/resolve.py", RESOLVE_PY);
    await client.writeFile("/tmp/mtu.py", MTU_PY);
  });
  after(async () => {
    await client?.close();
    await client?.remove();
    await server?.stop();
    await lab?.stop();
  });

  test("the guest's hostname, /etc/hosts lines and link MTU are the create's", async () => {
    assert.equal((await client.exec("hostname; cat /etc/hostname")).stdout, "box-1\nbox-1\n");
    assert.equal(await py("/tmp/resolve.py", "db.internal"), "10.9.8.7");
    assert.equal(await py("/tmp/resolve.py", "box-1"), "127.0.0.1");
    assert.match((await client.exec("cat /etc/hosts")).stdout, /^fd00::7\tv6\.internal$/m);
    assert.equal(await py("/tmp/mtu.py"), "1400");
  });

  test("allowListAdd / allowListDelete change DNS answers and requests at once", async () => {
    assert.equal(await py("/tmp/resolve.py", "allowed.test"), "unresolved gaierror", "intercept alone denies every host");
    assert.deepEqual(await client.allowListAdd("allowed.test, other.test", "allowed.test"), { added: ["allowed.test", "other.test"], allowedHosts: ["allowed.test", "other.test"] });
    assert.deepEqual(await client.allowListAdd("ALLOWED.test"), { added: [], allowedHosts: ["allowed.test", "other.test"] });
    const r = await fetch("http://allowed.test/echo");
    assert.equal(r.status, 200, JSON.stringify(r));
    const address = await py("/tmp/resolve.py", "other.test");
    assert.match(address, /^10\.201\.\d+\.\d+$/);
    assert.equal((await fetch("http://other.test/echo")).status, 200);

    assert.deepEqual(await client.allowListDelete("other.test", "never.test"), { removed: ["other.test"], allowedHosts: ["allowed.test"] });
    assert.equal(await py("/tmp/resolve.py", "other.test"), "unresolved gaierror");
    // The address handed out before: the proxy checks the host of each new request.
    const denied = await fetch(`http://${address}/echo`, "Host:other.test");
    assert.equal(denied.status, 403, JSON.stringify(denied));
    assert.equal((await fetch("http://allowed.test/echo")).status, 200);

    await assert.rejects(client.allowListAdd(" , "), (e: unknown) => e instanceof MatchlockError && /at least one host is required/.test(e.message));
  });

  test("matchlock allow-list add|delete reaches the sandbox through its engine", async () => {
    let r = await cli(["allow-list", "add", id, "other.test,sub.wild.test"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `Added to ${id}: other.test,sub.wild.test\nCurrent allow-list: allowed.test,other.test,sub.wild.test\n`);
    assert.equal((await fetch("http://other.test/echo")).status, 200);
    const recorded = JSON.parse((await cli(["get", id])).stdout) as { config: { network: { allowedHosts: string[] } } };
    assert.deepEqual(recorded.config.network.allowedHosts, ["allowed.test", "other.test", "sub.wild.test"], "matchlock get shows the list as it is now");
    r = await cli(["allow-list", "add", id, "other.test"]);
    assert.equal(r.stdout, `No new hosts were added to ${id}\nCurrent allow-list: allowed.test,other.test,sub.wild.test\n`);
    r = await cli(["allow-list", "delete", id, "allowed.test", "other.test", "sub.wild.test"]);
    assert.equal(r.stdout, `Removed from ${id}: allowed.test,other.test,sub.wild.test\nCurrent allow-list: (empty: every host denied)\n`);
    assert.equal(await py("/tmp/resolve.py", "allowed.test"), "unresolved gaierror");
    r = await cli(["allow-list", "delete", id, "x.test"]);
    assert.equal(r.stdout, `No hosts were removed from ${id}\nCurrent allow-list: (empty: every host denied)\n`);
    r = await cli(["allow-list", "add", "vm-00000000", "x.test"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /VM vm-00000000 not found/);
  });

  test("on the wire: the spec's result shapes (null for an empty list) and params errors", async () => {
    const s = new SocketSession(server.socketPath);
    try {
      assert.deepEqual((await s.call("attach", { id }, 1)).result, { id });
      assert.deepEqual((await s.call("allow_list_delete", { hosts: ["nothere.test"] }, 2)).result, { removed: null, allowed_hosts: null });
      assert.deepEqual((await s.call("allow_list_add", { hosts: [" a.test ", ""] }, 3)).result, { added: ["a.test"], allowed_hosts: ["a.test"] });
      assert.deepEqual((await s.call("allow_list_add", { hosts: ["a.test"] }, 4)).result, { added: [], allowed_hosts: ["a.test"] });
      assert.deepEqual((await s.call("allow_list_delete", { hosts: ["a.test"] }, 5)).result, { removed: ["a.test"], allowed_hosts: null });
      for (const [method, params, message] of [
        ["allow_list_add", { hosts: [" ", ""] }, /^hosts is required$/],
        ["allow_list_delete", {}, /^hosts is required$/],
        ["allow_list_add", { hosts: "a.test" }, /^hosts: /],
        ["allow_list_add", { hosts: ["a.test"], vm: "x" }, /^unknown field vm: /],
      ] as const) {
        const r = await s.call(method, params, 6);
        assert.equal(r.error?.code, -32602, `${method} ${JSON.stringify(params)}: ${JSON.stringify(r)}`);
        assert.match(r.error.message, message);
      }
    } finally {
      s.socket.destroy();
    }
  });

  test("a sandbox without the seal refuses allow-list changes with the spec's error", async () => {
    const other = new Client({ binaryPath: CLI, engineSocket: server.socketPath });
    try {
      await other.launch(new Sandbox(BUSYBOX));
      await assert.rejects(other.allowListAdd("a.test"), (e: unknown) =>
        e instanceof RPCError && e.code === -32000 && e.rpcMessage === "allow-list updates unavailable: sandbox was started without network interception");
    } finally {
      await other.close();
      await other.remove();
    }
  });
});

describe("matchlock run: --no-network, --add-host, --hostname", () => {
  before(async () => {
    await setUpE2E();
  });

  test("a sandbox without network still gets its names; flags that need a network are refused", async () => {
    const r = await cli(["run", "--image", BUSYBOX, "--no-network", "--add-host", "db.internal:10.9.8.7", "--hostname", "offline",
      "--", "sh", "-c", "hostname; grep db.internal /etc/hosts; ls /sys/class/net 2>/dev/null | grep -vx lo; true"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "offline\n10.9.8.7\tdb.internal\n");
    for (const [flags, message] of [
      [["--no-network", "--allow-host", "a.test"], /--no-network cannot be combined with --allow-host: they need a network/],
      [["--no-network", "--block-private-ips=false"], /--no-network cannot be combined with --block-private-ips=false/],
      [["--no-network", "--network-intercept", "--mtu", "1400"], /--no-network cannot be combined with --network-intercept, --mtu/],
      [["--add-host", "db"], /invalid --add-host "db": use NAME:IP/],
      [["--add-host", "db:nope"], /ip "nope" of host db is not an IP address/],
      [["--mtu", "9000"], /network\.mtu has no effect without/],
    ] as const) {
      const bad = await cli(["run", "--image", BUSYBOX, ...flags, "--", "true"]);
      assert.equal(bad.code, 125, `${flags.join(" ")}: ${bad.stderr}`);
      assert.match(bad.stderr, message);
    }
  });
});
