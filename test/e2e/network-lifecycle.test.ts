// The network seal's host side over a sandbox's life, on whichever engine $MATCHLOCK_BACKEND
// names: what a sandbox without network config gets, and that the link, netns, nft table and
// allocation are gone after close, after the VM or runsc dies under the engine, and after the
// engine itself is SIGKILLed (`matchlock gc`, the next engine's start).
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { Sandbox } from "../../src/sdk/index.js";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { BUSYBOX, cli, eventually, networkLeftovers, newClient, processesOf, PYTHON, setUpE2E } from "../helpers/e2e.js";


/** What a live sandbox's network holds on the host, on both engines (a micro-VM's tap lives in the netns too). */
const LIVE_TRACES = ["netns", "host interface", "nft table", "allocation"];


describe("network seal: cleanup", () => {
  let home: string;
  before(async () => {
    home = await setUpE2E();
  });

  test("when the sandbox's VM or runsc dies under it, close still removes everything", async () => {
    const client = newClient();
    const id = await client.launch(new Sandbox(BUSYBOX).allowHost("allowed.test"));
    assert.deepEqual(await networkLeftovers(id), LIVE_TRACES);
    for (const line of await processesOf(id)) process.kill(Number(line.trim().split(/\s+/)[0]), "SIGKILL");
    assert.deepEqual(await eventually(async () => (await processesOf(id))), []);
    await client.close();
    await client.remove();
    assert.deepEqual(await networkLeftovers(id), []);
  });

  test("close removes netns, interface, nft table and the allocation", async () => {
    const client = newClient();
    const id = await client.launch(new Sandbox(BUSYBOX).allowHost("allowed.test"));
    assert.deepEqual(await networkLeftovers(id), LIVE_TRACES);
    await client.close();
    await client.remove();
    assert.deepEqual(await networkLeftovers(id), []);
  });

  test("after the engine is SIGKILLed, `matchlock gc` frees what it left", async (t) => {
    // Any engine starting on this machine frees a dead engine's links: with the machine-wide
    // allocation directory, another test run's engine could get there before our gc does.
    process.env.MATCHLOCK_NET_STATE = join(home, "net-allocations");
    t.after(() => { delete process.env.MATCHLOCK_NET_STATE; });
    const client = newClient();
    const id = await client.launch(new Sandbox(BUSYBOX).allowHost("allowed.test"));
    const enginePid = Number(await readFile(join(home, "vms", id, "pid"), "utf8"));
    process.kill(enginePid, "SIGKILL");
    await client.close().catch(() => {});
    assert.deepEqual(await networkLeftovers(id), LIVE_TRACES, "a killed engine cannot clean up");
    assert.deepEqual(await eventually(async () => (await processesOf(id))), [], "the sandbox follows its engine");
    const r = await cli(["gc"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`Freed network of ${id}`));
    assert.deepEqual(await networkLeftovers(id), []);
  });

  test("after the engine is SIGKILLed, the next engine's start frees what it left", async (t) => {
    process.env.MATCHLOCK_NET_STATE = join(home, "net-allocations"); // as above: ours alone
    t.after(() => { delete process.env.MATCHLOCK_NET_STATE; });
    const first = newClient();
    const id = await first.launch(new Sandbox(BUSYBOX).allowHost("allowed.test"));
    process.kill(Number(await readFile(join(home, "vms", id, "pid"), "utf8")), "SIGKILL");
    await first.close().catch(() => {});
    assert.deepEqual(await networkLeftovers(id), LIVE_TRACES);
    const next = newClient();
    await next.start();
    assert.deepEqual(await eventually(() => networkLeftovers(id)), []);
    await next.close();
  });
});

describe("no network config", () => {
  before(async () => {
    await setUpE2E();
  });

  test("a sandbox without allowed hosts or secrets has loopback only, and it works", async () => {
    await using client = newClient();
    await client.launch(new Sandbox(PYTHON));
    const r = await client.exec(`python3 -c '
import socket
print([n for _, n in socket.if_nameindex()])
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
c = socket.create_connection(s.getsockname(), timeout=5); a, _ = s.accept(); c.sendall(b"lo ok"); print(a.recv(10).decode())
t = socket.socket(); t.settimeout(3)
try: t.connect(("10.0.0.1", 80)); print("connected")
except OSError as e: print("unreachable")'`);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, "['lo']\nlo ok\nunreachable\n");
    assert.equal((await client.exec("cat /etc/ssl/certs/matchlock-ca.crt; echo $SSL_CERT_FILE")).stdout.trim(), "", "no CA without a policy");
  });
});
