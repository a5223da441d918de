// End to end: an IPv4 address in allowed_hosts is reachable when the guest dials it directly
// (no name, no DNS): HTTP, HTTPS without SNI, and raw TCP on another port, all through the
// engine's checks. Through that address the guest reaches nothing else: a Host header naming
// another host is refused, and an address not listed stays unreachable; the allow-list's runtime
// changes apply to addresses too. An allowed private address that block_private_ips would block
// is refused at create.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { RPCError, Sandbox } from "../../src/sdk/index.js";
import { BUSYBOX, PYTHON, newClient } from "../helpers/e2e.js";
import { labSandbox } from "../helpers/net-lab.js";

/** dial.py IP OTHER_IP: prints what each way of reaching IP (and OTHER_IP) gave, as one JSON object. */
const DIAL_PY = `
import json, socket, sys, urllib.error, urllib.request
ip, other = sys.argv[1], sys.argv[2]
def get(url, host=None):
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r: return [r.status, r.read().decode()]
    except urllib.error.HTTPError as e: return [e.code, e.read().decode()]
    except Exception as e: return [0, type(e).__name__]
def first_line(addr, port):
    try:
        s = socket.create_connection((addr, port), timeout=10)
        return s.makefile().readline()
    except Exception as e: return type(e).__name__
print(json.dumps({
    "http": get("http://%s/hello" % ip),
    "https": get("https://%s/hello" % ip),
    "https_8443": get("https://%s:8443/hello" % ip),
    "fronted": get("http://%s/hello" % ip, "other.test"),
    "raw": first_line(ip, 7777),
    "not_listed": first_line(other, 80),
}))
`;

/** python3 -c GET_PY URL: prints [status, body], or [0, the error's type] when nothing answered. */
const GET_PY = `
import json, sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=10) as r: print(json.dumps([r.status, r.read().decode()]))
except urllib.error.HTTPError as e: print(json.dumps([e.code, e.read().decode()]))
except Exception as e: print(json.dumps([0, type(e).__name__]))
`;

describe("network seal: an IP address in allowed_hosts", () => {
  const events: Array<Record<string, unknown>> = [];
  // The lab in 198.18.0.0/15: a public-range address, so the default block_private_ips stays on.
  const suite = labSandbox((lab) => new Sandbox(PYTHON).allowHost(lab.serverIp), { publicRange: true });

  test("dialled directly: HTTP, HTTPS (no SNI) and raw TCP reach it; another Host or address does not", async () => {
    const { client, lab } = suite;
    client.onEvent((e) => events.push((e as unknown as { network?: Record<string, unknown> }).network ?? {}));
    await client.writeFile("/tmp/dial.py", DIAL_PY);
    const r = await client.exec(`python3 /tmp/dial.py ${lab.serverIp} ${lab.rawIp}`);
    assert.equal(r.exitCode, 0, r.stderr);
    const got = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.deepEqual(got.http, [200, `hello from ${lab.serverIp}\n`]);
    // The guest trusted the engine's leaf for the address (its CA), the engine the server's.
    assert.deepEqual(got.https, [200, `hello from ${lab.serverIp}\n`]);
    assert.deepEqual(got.https_8443, [200, `hello from ${lab.serverIp}:8443\n`]);
    assert.deepEqual(got.fronted, [403, "Blocked by policy"]);
    assert.equal(got.raw, "echo-server\n");
    assert.notEqual(got.not_listed, "", "an address not listed answered");
    assert.match(String(got.not_listed), /Error|timeout/, String(got.not_listed));
    assert.ok(events.some((e) => e.host === lab.serverIp && e.blocked === false), JSON.stringify(events));
    assert.ok(events.some((e) => e.host === "other.test" && e.blocked === true), JSON.stringify(events));
  });

  test("an address added to the allow-list at runtime becomes reachable by that address, and unreachable once deleted", async () => {
    const { client, lab } = suite;
    const probe = async () => {
      const r = await client.exec(`python3 -c '${GET_PY}' http://${lab.rawIp}/hello`);
      assert.equal(r.exitCode, 0, r.stderr);
      return JSON.parse(r.stdout) as [number, string];
    };
    await client.allowListAdd(lab.rawIp);
    // The raw upstream answers each request with the request line it received.
    assert.deepEqual(await probe(), [200, JSON.stringify({ request: "GET /hello HTTP/1.1", body: "" })]);
    await client.allowListDelete(lab.rawIp);
    const [status] = await probe();
    assert.equal(status, 0, "the address was reached after it was deleted");
  });

  test("a private address with block_private_ips on is refused at create, naming it", async () => {
    await using client = newClient();
    const err = await client.launch(new Sandbox(BUSYBOX).allowHost("10.0.0.5")).then(
      () => assert.fail("the sandbox was created"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof RPCError, String(err));
    assert.equal(err.code, -32602, err.message);
    assert.match(err.message, /10\.0\.0\.5 is a private address, which block_private_ips blocks/);
  });
});
