// dns_servers with the network seal, on whichever engine $MATCHLOCK_BACKEND names: the engine
// resolves allowed names through them (a DNS server in a network namespace this test creates,
// test/helpers/net-lab.ts) while the guest keeps asking only the engine.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Sandbox } from "../../src/sdk/index.js";
import { PYTHON } from "../helpers/e2e.js";
import { labSandbox } from "../helpers/net-lab.js";

describe("network seal: dns_servers", () => {
  // dnsonly.test is known to the lab's DNS server only, not to the engine's test hosts file.
  const suite = labSandbox((lab) => new Sandbox(PYTHON).allowHost("dnsonly.test", "allowed.test").withDNSServers(lab.serverIp).allowPrivateIPs());

  test("the engine resolves allowed names through them; the guest still asks only the engine", async () => {
    const r = await suite.client.exec(`python3 -c '
import urllib.request
print(urllib.request.urlopen("http://dnsonly.test/hello", timeout=20).read().decode().strip())'; cat /etc/resolv.conf`);
    assert.equal(r.exitCode, 0, r.stderr);
    const [body, ...resolv] = r.stdout.trim().split("\n");
    assert.equal(body, "hello from dnsonly.test");
    assert.ok(!resolv.join("\n").includes(suite.lab.serverIp), "the guest is not pointed at the upstream resolver");
    // Queries for names not allowed, even sent straight to the configured server, never reach it.
    const q = await suite.client.exec(`python3 -c '
import socket, struct
q = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\\x0cexfil-c0ffee\\x05other\\x04test\\x00" + struct.pack(">HH", 1, 1)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
u.sendto(q, ("${suite.lab.serverIp}", 53)); print(u.recvfrom(512)[0][3] & 15)'`);
    assert.equal(q.stdout, "3\n", q.stderr); // NXDOMAIN, from the engine
    const log = (await (await globalThis.fetch(`http://${suite.lab.serverIp}/dns-log`)).json()) as string[];
    assert.ok(log.includes("A dnsonly.test"), JSON.stringify(log));
    assert.ok(!log.some((l) => l.includes("exfil")), JSON.stringify(log));
  });
});
