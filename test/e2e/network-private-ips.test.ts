// block_private_ips with the network seal, on whichever engine $MATCHLOCK_BACKEND names: an
// allowed name whose real address is private (a server in a network namespace this test creates,
// test/helpers/net-lab.ts) is refused. Its own file: under TCG the seal's main suite fills one.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Sandbox } from "../../src/sdk/index.js";
import { PYTHON } from "../helpers/e2e.js";
import { labSandbox } from "../helpers/net-lab.js";

describe("network seal: block_private_ips", () => {
  const suite = labSandbox(() => new Sandbox(PYTHON).allowHost("allowed.test").blockPrivateIPs());

  test("an allowed name that resolves to a private address is refused (403, nothing sent)", async () => {
    const r = await suite.client.exec(`python3 -c '
import urllib.request, urllib.error
try: urllib.request.urlopen("http://allowed.test/hello", timeout=20)
except urllib.error.HTTPError as e: print(e.code, e.read().decode())'`);
    assert.equal(r.stdout, "403 Blocked by policy\n");
  });

  test("on another port too (HTTP, TLS or raw): the connection is reset before any byte goes out", async () => {
    const r = await suite.client.exec(`python3 -c '
import socket
for port in (8080, 8443, 7777):
    s = socket.create_connection(("allowed.test", port), timeout=20)
    try:
        s.sendall(b"GET /hello HTTP/1.1\\r\\nHost: allowed.test\\r\\n\\r\\n")
        print(port, "answered" if s.recv(100) else "closed")
    except OSError: print(port, "reset")'`);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n").map((l) => l.replace(" closed", " reset")), ["8080 reset", "8443 reset", "7777 reset"]);
  });
});
