// One sandbox's share of the host's connections: the settings, the engine's count of open guest
// connections, and the nft rules that bound its conntrack entries.
import assert from "node:assert/strict";
import net, { type Socket } from "node:net";
import { after, describe, test } from "node:test";
import { ConnectionBudget, connectionLimits, DEFAULT_CONNECTION_LIMITS } from "../../src/engine/net/connection-limits.js";
import { BlockReason, type NetworkEvent } from "../../src/engine/net/events.js";
import { rules } from "../../src/engine/net/firewall.js";

describe("connection limit settings", () => {
  test("defaults, and positive integers from the environment", () => {
    assert.deepEqual(connectionLimits({}), DEFAULT_CONNECTION_LIMITS);
    assert.deepEqual(connectionLimits({ MATCHLOCK_NET_MAX_CONNECTIONS: "16", MATCHLOCK_NET_CONNECTION_RATE: "2" }), { open: 16, perSecond: 2 });
  });

  test("anything else is a clear error naming the variable", () => {
    for (const bad of ["0", "-1", "1.5", "lots", "1e3", " "]) {
      assert.throws(() => connectionLimits({ MATCHLOCK_NET_MAX_CONNECTIONS: bad }), /MATCHLOCK_NET_MAX_CONNECTIONS must be a positive integer/);
      assert.throws(() => connectionLimits({ MATCHLOCK_NET_CONNECTION_RATE: bad }), /MATCHLOCK_NET_CONNECTION_RATE must be a positive integer/);
    }
  });
});

describe("the engine's count of a sandbox's open connections", () => {
  const server = net.createServer();
  const accepted: Socket[] = [];
  const dialled: Socket[] = [];
  server.on("connection", (s) => accepted.push(s));
  after(() => {
    for (const s of [...accepted, ...dialled]) s.destroy();
    server.close();
  });

  /** A fresh accepted socket and whether its dialler saw it reset. */
  async function connection(): Promise<{ socket: Socket; reset: Promise<boolean> }> {
    if (!server.listening) await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const next = new Promise<Socket>((resolve) => server.once("connection", resolve));
    const c = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
    dialled.push(c);
    const reset = new Promise<boolean>((resolve) => {
      c.on("error", (e: NodeJS.ErrnoException) => resolve(e.code === "ECONNRESET"));
      c.on("close", () => resolve(false));
    });
    return { socket: await next, reset };
  }

  test("admits up to the limit, resets beyond it with one event, and admits again once one closes", async () => {
    const events: NetworkEvent[] = [];
    const budget = new ConnectionBudget(3, (e) => events.push(e), () => {});
    const open: Array<{ socket: Socket }> = [];
    for (let i = 0; i < 3; i++) {
      const c = await connection();
      assert.equal(budget.admit(c.socket), true);
      open.push(c);
    }
    const refused = [await connection(), await connection()];
    for (const c of refused) assert.equal(budget.admit(c.socket), false);
    for (const c of refused) assert.equal(await c.reset, true);
    assert.equal(events.length, 1, "one event, not one per refused connection");
    assert.equal(events[0]!.blocked, true);
    assert.equal(events[0]!.block_reason, BlockReason.CONNECTIONS);
    open[0]!.socket.destroy();
    await new Promise((r) => open[0]!.socket.once("close", r));
    assert.equal(budget.admit((await connection()).socket), true);
  });
});

describe("the sandbox's nft table", () => {
  test("limits new TCP connections and UDP flows per second and how many it may have tracked", () => {
    const text = rules({ table: "t", hostInterface: "mlhx", hostIp: "10.200.0.1", ports: { http: 1, https: 2, other: 3, dns: 4 }, limits: { open: 16, perSecond: 5 }, literals: [] });
    assert.match(text, /iifname "mlhx" meta l4proto tcp ct state new limit rate over 5\/second burst 10 packets reject with tcp reset/);
    assert.match(text, /iifname "mlhx" meta l4proto udp ct state new limit rate over 5\/second burst 10 packets reject/);
    assert.match(text, /iifname "mlhx" meta l4proto tcp ct state new ct count over 32 reject with tcp reset/);
    assert.match(text, /iifname "mlhx" meta l4proto udp ct state new ct count over 32 reject/);
    // Before anything is accepted.
    assert.ok(text.indexOf("ct count") < text.indexOf("accept\n"));
  });

  test("sends every TCP port of an allowed IPv4 literal to the port sniffer, after the synthetic range", () => {
    const spec = { table: "t", hostInterface: "mlhx", hostIp: "10.200.0.1", ports: { http: 1, https: 2, other: 3, dns: 4 }, limits: { open: 16, perSecond: 5 } };
    const text = rules({ ...spec, literals: ["198.18.0.5", "203.0.113.9"] });
    assert.match(text, /set literals \{\s+type ipv4_addr;\s+elements = \{ 198\.18\.0\.5, 203\.0\.113\.9 \}/);
    assert.match(text, /iifname "mlhx" ip daddr @literals meta l4proto tcp dnat ip to 10\.200\.0\.1:3/);
    assert.ok(text.indexOf("ip daddr @literals") > text.lastIndexOf("10.201.0.0/16"));
    assert.doesNotMatch(rules({ ...spec, literals: [] }), /elements/);
  });
});
