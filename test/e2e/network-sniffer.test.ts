// The port sniffer (ports other than 80/443) on whichever engine $MATCHLOCK_BACKEND names: bytes
// an HTTP server would read as a request go through the proxy and its checks however they start
// (empty lines first) and however slowly they come (a method a few bytes at a time), so a
// request naming another host cannot ride a raw relay to an allowed host's HTTP server. What is
// really not HTTP is still relayed raw.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Sandbox } from "../../src/sdk/index.js";
import { PYTHON } from "../helpers/e2e.js";
import { labSandbox } from "../helpers/net-lab.js";

/** send.py PORT PAUSE PART...: sends the parts to allowed.test:PORT, PAUSE seconds apart, and prints what came back. */
const SEND_PY = `
import json, socket, sys, time
port, pause, parts = int(sys.argv[1]), float(sys.argv[2]), [p.encode().decode("unicode_escape").encode("latin-1") for p in sys.argv[3:]]
s = socket.create_connection(("allowed.test", port), timeout=30)
got = b""
try:
    for i, p in enumerate(parts):
        if i:
            time.sleep(pause)
        s.sendall(p)
    while True:
        chunk = s.recv(4096)
        if not chunk: break
        got += chunk
        if b"hello from" in got or b"Blocked by policy" in got or b"\\n" in got and port == 7777: break
except OSError as e:
    got += ("[%s]" % type(e).__name__).encode()
print(json.dumps(got.decode("latin-1")))
`;

describe("network seal: the port sniffer", () => {
  const events: Array<Record<string, unknown>> = [];
  const suite = labSandbox(() => new Sandbox(PYTHON).allowHost("allowed.test").allowPrivateIPs());
  let ready = false;
  const send = async (port: number, pause: number, ...parts: string[]): Promise<string> => {
    if (!ready) {
      ready = true;
      suite.client.onEvent((e) => events.push((e as unknown as { network?: Record<string, unknown> }).network ?? {}));
      await suite.client.writeFile("/tmp/send.py", SEND_PY);
    }
    const r = await suite.client.exec(`python3 /tmp/send.py ${port} ${pause} ${parts.map((p) => `'${p}'`).join(" ")}`);
    assert.equal(r.exitCode, 0, r.stderr);
    return JSON.parse(r.stdout) as string;
  };

  test("empty lines before a request naming another host: the proxy refuses it, it never reaches the server", async () => {
    const reply = await send(8080, 0, "\\r\\n\\r\\nGET /hello HTTP/1.1\\r\\nHost: other.test\\r\\n\\r\\n");
    assert.match(reply, /^HTTP\/1\.1 403 /);
    assert.doesNotMatch(reply, /hello from other\.test/);
    assert.ok(events.some((e) => e.host === "other.test" && e.blocked === true), JSON.stringify(events));
  });

  test("a request sent a few bytes at a time, with pauses, is still the proxy's", async () => {
    const reply = await send(8080, 3, "\\r\\nGE", "T /hel", "lo HTTP/1.1\\r\\nHost: other.test\\r\\n\\r\\n");
    assert.match(reply, /^HTTP\/1\.1 403 /);
    assert.doesNotMatch(reply, /hello from other\.test/);
  });

  test("the same request for the dialled name goes through the proxy to the server", async () => {
    const reply = await send(8080, 0, "\\r\\n\\r\\nGET /hello HTTP/1.1\\r\\nHost: allowed.test\\r\\n\\r\\n");
    assert.match(reply, /^HTTP\/1\.1 200 [\s\S]*hello from allowed\.test/);
  });

  test("a protocol that is not HTTP is still relayed raw", async () => {
    const reply = await send(7777, 0, "ping\\n");
    assert.match(reply, /^echo-server\n/);
  });
});
