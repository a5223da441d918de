// The network policy's pure parts: glob matching, private ranges, secret scoping, DNS answers.
import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import { describe, test } from "node:test";
import { SandboxDnsServer, SyntheticAddresses } from "../../src/engine/net/dns-server.js";
import { matchGlob, NetworkPolicy, normalizeHost } from "../../src/engine/net/policy.js";
import { isPrivateAddress } from "../../src/engine/net/private-ranges.js";
import { networkInterfaces } from "node:os";
import { BlockReason } from "../../src/engine/net/events.js";
import { isHostAddress } from "../../src/engine/net/host-addresses.js";
import { pickAddress, UpstreamBlockedError } from "../../src/engine/net/upstream.js";

describe("allowed_hosts patterns", () => {
  test("the spec's glob forms", () => {
    assert.ok(matchGlob("*", "anything.com"));
    assert.ok(matchGlob("*.example.com", "a.b.example.com"));
    assert.ok(!matchGlob("*.example.com", "example.com"));
    assert.ok(!matchGlob("*.example.com", "evilexample.com"));
    assert.ok(matchGlob("api.*", "api.x.y"));
    assert.ok(!matchGlob("api.*", "api"));
    assert.ok(matchGlob("api-*.example.com", "api-a.b.example.com"));
    assert.ok(matchGlob("*example.com", "evilexample.com"));
    assert.ok(matchGlob("a*b*c", "axxbyyc"));
    assert.ok(!matchGlob("a*b*c", "axxcyyb"));
    assert.ok(!matchGlob("example.com", "example.com.evil"));
  });

  test("matching is case-insensitive and ignores a trailing dot and a port", () => {
    const p = new NetworkPolicy({ allowedHosts: ["API.Example.COM"], blockPrivateIps: false, secrets: [] });
    assert.ok(p.isHostAllowed("api.example.com."));
    assert.ok(p.isHostAllowed("Api.Example.Com:8443"));
    assert.ok(!p.isHostAllowed("other.com"));
    assert.equal(normalizeHost("[::1]:80"), "::1");
  });

  test("an empty allowlist with interception on denies everything", () => {
    const p = new NetworkPolicy({ allowedHosts: [], blockPrivateIps: false, secrets: [] });
    assert.ok(!p.isHostAllowed("example.com"));
  });

  test("a secret's hosts are allowed automatically", () => {
    const p = new NetworkPolicy({ allowedHosts: [], blockPrivateIps: false, secrets: [{ name: "K", placeholder: "P", value: "v", hosts: ["api.test"], allowCleartext: false }] });
    assert.ok(p.isHostAllowed("api.test"));
  });
});

describe("private ranges", () => {
  test("the spec's ranges plus our additions, including IPv4-mapped IPv6", () => {
    for (const ip of ["10.1.2.3", "172.16.0.1", "192.168.1.1", "127.0.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
      "::1", "fc00::1", "fd12::1", "fe80::1", "::ffff:127.0.0.1", "::ffff:7f00:1", "::ffff:10.0.0.1", "::", "::10.0.0.1"]) {
      assert.ok(isPrivateAddress(ip), ip);
    }
    for (const ip of ["8.8.8.8", "1.1.1.1", "2001:4860::8888", "::ffff:8.8.8.8", "example.com"]) assert.ok(!isPrivateAddress(ip), ip);
  });

  test("block_private_ips refuses private addresses and IP literals", () => {
    const p = new NetworkPolicy({ allowedHosts: ["*"], blockPrivateIps: true, secrets: [] });
    assert.ok(!p.isAddressAllowed("10.0.0.1"));
    assert.ok(!p.isHostAllowed("127.0.0.1"));
    assert.ok(p.isAddressAllowed("93.184.216.34"));
  });
});

describe("the host's own addresses", () => {
  test("loopback, unspecified, every interface's address (and their IPv4-mapped forms) are the host's", async () => {
    for (const a of ["127.0.0.1", "127.9.9.9", "0.0.0.0", "::1", "::", "::ffff:127.0.0.1", "::ffff:7f00:1"]) assert.ok(await isHostAddress(a), a);
    // Another sandbox's end of its link, a synthetic address: the engine's own, whoever holds them now.
    for (const a of ["10.200.7.2", "10.200.255.254", "10.201.0.9", "::ffff:10.200.0.2"]) assert.ok(await isHostAddress(a), a);
    assert.equal(await isHostAddress("10.202.0.1"), false);
    const own = Object.values(networkInterfaces()).flat().filter((i) => i && !i.address.startsWith("fe80")).map((i) => i!.address);
    assert.ok(own.length > 0);
    for (const a of own) assert.ok(await isHostAddress(a), a);
    const v4 = own.find((a) => !a.includes(":") && !a.startsWith("127."));
    if (v4) assert.ok(await isHostAddress(`::ffff:${v4}`), `::ffff:${v4}`);
  });

  test("an address nobody here owns is not; garbage is an error", async () => {
    // TEST-NET-3 and the IPv6 documentation range, never assigned on a test machine.
    assert.equal(await isHostAddress("203.0.113.254"), false);
    assert.equal(await isHostAddress("2001:db8:ffff::254"), false);
    await assert.rejects(isHostAddress("not-an-ip"), /not an IP address/);
  });

  test("pickAddress refuses them whether or not private addresses are blocked, and picks another address of the name", async () => {
    const open = new NetworkPolicy({ allowedHosts: ["*"], blockPrivateIps: false, secrets: [] });
    const blocking = new NetworkPolicy({ allowedHosts: ["*"], blockPrivateIps: true, secrets: [] });
    const resolver = (addresses: string[]) => ({ resolve: async () => addresses }) as unknown as Parameters<typeof pickAddress>[2];
    for (const policy of [open, blocking]) {
      const err = await pickAddress(policy, "self.test", resolver(["::1", "127.0.0.1"])).catch((e: unknown) => e);
      assert.ok(err instanceof UpstreamBlockedError);
      assert.equal(err.reason, policy === open ? BlockReason.HOST_ADDRESS : BlockReason.PRIVATE);
    }
    assert.equal(await pickAddress(open, "mixed.test", resolver(["127.0.0.1", "203.0.113.254"])), "203.0.113.254");
  });
});

describe("secrets", () => {
  const rule = (name: string, hosts: string[], allowCleartext = false) => ({ name, placeholder: `SANDBOX_SECRET_${name}`, value: `real-${name}`, hosts, allowCleartext });
  const p = new NetworkPolicy({ allowedHosts: ["*"], blockPrivateIps: false, secrets: [rule("x", ["api.test"]), rule("plain", ["api.test"], true), rule("any", [])] });

  test("replaced for its host", () => {
    const d = p.secretsFor("API.test", "tls", ["Bearer SANDBOX_SECRET_x"]);
    assert.ok(d.ok);
    if (d.ok) assert.equal(d.apply("Bearer SANDBOX_SECRET_x"), "Bearer real-x");
  });

  test("a placeholder for another host blocks the request; without it the request passes unchanged", () => {
    assert.deepEqual(p.secretsFor("evil.test", "tls", ["/x?k=SANDBOX_SECRET_x"]), { ok: false, secret: "x", reason: "secret placeholder sent to unauthorized host" });
    const d = p.secretsFor("evil.test", "tls", ["/x"]);
    assert.ok(d.ok);
    if (d.ok) assert.equal(d.apply("SANDBOX_SECRET_x"), "SANDBOX_SECRET_x");
  });

  test("over cleartext only a secret that allows it is substituted; another one's placeholder blocks", () => {
    assert.deepEqual(p.secretsFor("api.test", "cleartext", ["SANDBOX_SECRET_x"]), { ok: false, secret: "x", reason: "secret placeholder sent over cleartext HTTP" });
    assert.deepEqual(p.secretsFor("other.test", "cleartext", ["SANDBOX_SECRET_any"]), { ok: false, secret: "any", reason: "secret placeholder sent over cleartext HTTP" });
    const d = p.secretsFor("api.test", "cleartext", ["SANDBOX_SECRET_plain"]);
    assert.ok(d.ok);
    if (d.ok) assert.equal(d.apply("k=SANDBOX_SECRET_plain"), "k=real-plain");
  });

  test("every secret bound to a host is redacted from its answers, whatever the request carried", () => {
    const names = (host: string, t: "tls" | "cleartext") => p.secretScope(host, t).redacted.map((s) => s.name);
    assert.deepEqual(names("api.test", "cleartext"), ["x", "plain", "any"]);
    assert.deepEqual(names("other.test", "tls"), ["any"]);
    const d = p.secretsFor("api.test", "tls", ["/nothing"]);
    assert.ok(d.ok && d.used.length === 0 && d.scope.redacted.length === 3);
  });

  test("events and logs: every real value becomes its placeholder", () => {
    assert.equal(p.redactValues("https://api.test/?k=real-x&j=real-any real-x"), "https://api.test/?k=SANDBOX_SECRET_x&j=SANDBOX_SECRET_any SANDBOX_SECRET_x");
  });
});

describe("the sandbox's DNS answers", () => {
  const policy = new NetworkPolicy({ allowedHosts: ["*.allowed.test"], blockPrivateIps: false, secrets: [] });
  const dns = new SandboxDnsServer(policy, new SyntheticAddresses(), () => {});
  const ask = (name: string, type: "A" | "AAAA" = "A") =>
    dnsPacket.decode(dns.answer(dnsPacket.encode({ type: "query", id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] }))!) as unknown as
      { rcode: string; answers: Array<{ data: unknown }> };

  test("an allowed name gets a stable synthetic address; AAAA gets no records", () => {
    const a = ask("www.Allowed.test");
    assert.equal(a.rcode, "NOERROR");
    assert.equal(a.answers![0]!.data, "10.201.0.1");
    assert.equal(ask("www.allowed.test").answers![0]!.data, "10.201.0.1");
    assert.equal(ask("api.allowed.test").answers![0]!.data, "10.201.0.2");
    assert.deepEqual(ask("www.allowed.test", "AAAA").answers, []);
  });

  test("any other name is NXDOMAIN", () => {
    assert.equal(ask("secret-data.evil.test").rcode, "NXDOMAIN");
    assert.equal(ask("allowed.test").rcode, "NXDOMAIN"); // *.x does not cover the apex
  });

  test("garbage gets no answer", () => {
    assert.equal(dns.answer(Buffer.from("nonsense")), undefined);
  });
});

describe("redacting echoed secret values", () => {
  test("a value split across chunks is still replaced", async () => {
    const { RedactStream } = await import("../../src/engine/net/redact-stream.js");
    const s = new RedactStream([{ from: Buffer.from("sk-REAL"), to: Buffer.from("SANDBOX_SECRET_p") }]);
    const out: Buffer[] = [];
    s.on("data", (d: Buffer) => out.push(d));
    const done = new Promise((r) => s.on("end", r));
    for (const part of ["a sk-R", "EAL b sk", "-REAL", " c sk-RE"]) s.write(Buffer.from(part));
    s.end();
    await done;
    assert.equal(Buffer.concat(out).toString(), "a SANDBOX_SECRET_p b SANDBOX_SECRET_p c sk-RE");
  });
});

describe("runtime allow-list (allow_list_add / allow_list_delete)", () => {
  test("adds what is new, removes what is listed, and the DNS answers follow at once", () => {
    const policy = new NetworkPolicy({ allowedHosts: ["a.test"], blockPrivateIps: false, secrets: [{ name: "K", placeholder: "P", value: "v", hosts: ["s.test"], allowCleartext: false }] });
    const dns = new SandboxDnsServer(policy, new SyntheticAddresses(), () => {});
    const rcode = (name: string) => dnsPacket.decode(dns.answer(dnsPacket.encode({ type: "query", id: 1, questions: [{ type: "A", name }] }))!).flags! & 15;
    assert.equal(rcode("b.test"), 3);
    assert.deepEqual(policy.addAllowedHosts([" b.test ", "A.test", "b.test", "", "*.c.test"]), { changed: ["b.test", "*.c.test"], allowList: ["a.test", "b.test", "*.c.test"] });
    assert.equal(rcode("b.test"), 0);
    assert.ok(policy.isHostAllowed("x.c.test"));
    assert.deepEqual(policy.addAllowedHosts(["b.test"]).changed, []);
    assert.deepEqual(policy.removeAllowedHosts(["B.test.", "nothere.test"]), { changed: ["b.test"], allowList: ["a.test", "*.c.test"] });
    assert.equal(rcode("b.test"), 3);
    assert.deepEqual(policy.removeAllowedHosts(["a.test", "*.c.test"]).allowList, []);
    assert.ok(!policy.isHostAllowed("a.test"), "an empty allow-list denies every host");
    assert.ok(policy.isHostAllowed("s.test"), "a secret's hosts stay allowed: they are not on the list");
  });
});
