// Port forwarding (protocol spec 5.6) on the engine under test: host ports reach a server in the
// guest (busybox `nc -ll -e /bin/cat`, an echo server that forks per connection) through the
// agent. Large binary round trips, many connections at once, replace semantics, address lists,
// bind errors (-32000, and a launch that fails leaves nothing), the CLI's `run -p` and
// `port-forward` against a resident engine, and the listeners going away with the sandbox.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir } from "node:fs/promises";
import { connect, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Client, RPCError, Sandbox } from "../../src/sdk/index.js";
import { BACKEND, BUSYBOX, CLI, cli, eventually, leftovers, newClient, setUpE2E } from "../helpers/e2e.js";
import { startServer } from "../helpers/resident.js";
import { freePort } from "../helpers/free-port.js";

const GUEST_PORT = 7000;
const OTHER_GUEST_PORT = 7001;

/** Starts a persistent echo server on a guest port (detached: the exec returns at once). */
async function startEcho(client: Client, port: number): Promise<void> {
  const r = await client.exec(`nc -ll -p ${port} -e /bin/cat </dev/null >/dev/null 2>&1 &`);
  assert.equal(r.exitCode, 0, r.stderr);
}

/** Sends `data`, half-closes, and returns everything that came back before the peer's end. */
function echo(port: number, data: Buffer, host = "127.0.0.1"): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    const got: Buffer[] = [];
    socket.on("data", (d: Buffer) => got.push(d));
    socket.on("end", () => resolve(Buffer.concat(got)));
    socket.on("error", reject);
    socket.on("close", (hadError) => {
      if (!hadError) resolve(Buffer.concat(got));
    });
    socket.end(data);
  });
}

/** Waits until an echo through `port` works (the guest server may still be starting). */
async function echoWorks(port: number): Promise<void> {
  const problems = await eventually(async () => {
    try {
      const back = await echo(port, Buffer.from("ping\n"));
      return back.toString() === "ping\n" ? [] : [`echoed ${JSON.stringify(back.toString())}`];
    } catch (err) {
      return [(err as Error).message];
    }
  }, 120_000);
  assert.deepEqual(problems, []);
}


/** What a connection to `port` gets: "refused" when nothing listens. */
function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.on("connect", () => {
      socket.destroy();
      resolve("connected");
    });
    socket.on("error", (err: NodeJS.ErrnoException) => resolve(err.code === "ECONNREFUSED" ? "refused" : String(err.code)));
  });
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe(`port forwarding (${BACKEND})`, () => {
  let home: string;
  let client: Client;
  let port: number;

  before(async () => {
    home = await setUpE2E();
    port = await freePort();
    client = newClient();
    await client.launch(new Sandbox(BUSYBOX).withPortForward(port, GUEST_PORT));
    await startEcho(client, GUEST_PORT);
    await startEcho(client, OTHER_GUEST_PORT);
    await echoWorks(port);
  });

  after(async () => {
    await client?.close();
    await client?.remove();
  });

  test("a large binary payload comes back intact, both ways under back-pressure", async () => {
    const data = randomBytes(16 << 20);
    const back = await echo(port, data);
    assert.equal(back.length, data.length);
    assert.equal(sha(back), sha(data));
  });

  test("many connections at once each get their own bytes back", async () => {
    const payloads = Array.from({ length: 12 }, (_, i) => Buffer.concat([Buffer.from(`conn ${i}:`), randomBytes(512 * 1024 + i)]));
    const backs = await Promise.all(payloads.map((p) => echo(port, p)));
    backs.forEach((b, i) => assert.equal(sha(b), sha(payloads[i]!), `connection ${i}`));
  });

  test("a stalled reader stalls only its own connection", async () => {
    // This connection sends 8 MiB and never reads: the echo fills its windows and stops there.
    const stalled = connect({ host: "127.0.0.1", port });
    stalled.pause();
    stalled.write(randomBytes(8 << 20));
    await new Promise((r) => stalled.once("connect", r));
    const data = randomBytes(1 << 20);
    assert.equal(sha(await echo(port, data)), sha(data));
    assert.equal((await client.exec("echo still answering")).stdout, "still answering\n");
    stalled.destroy();
  });

  test("a guest port nobody listens on: the host connection is closed without data, the forward goes on", async () => {
    const [binding] = await client.portForward(`${await freePort()}:7999`);
    const back = await echo(binding!.localPort, Buffer.from("hello")).catch((err: NodeJS.ErrnoException) => Buffer.from(`error ${err.code}`));
    assert.ok(back.length === 0 || back.toString() === "error ECONNRESET", `got ${JSON.stringify(back.toString())}`);
    const bindings = await client.portForward(`${port}:${GUEST_PORT}`);
    assert.deepEqual(bindings, [{ address: "127.0.0.1", localPort: port, remotePort: GUEST_PORT }]);
    await echoWorks(port);
  });

  test("port_forward replaces the previous set: old listeners close, results are forward-major over the addresses", async () => {
    const a = await freePort();
    const b = await freePort();
    const bindings = await client.portForwardWithAddresses(["127.0.0.1", "127.0.0.2"], `${a}:${GUEST_PORT}`, `${b}:${OTHER_GUEST_PORT}`);
    assert.deepEqual(bindings, [
      { address: "127.0.0.1", localPort: a, remotePort: GUEST_PORT },
      { address: "127.0.0.2", localPort: a, remotePort: GUEST_PORT },
      { address: "127.0.0.1", localPort: b, remotePort: OTHER_GUEST_PORT },
      { address: "127.0.0.2", localPort: b, remotePort: OTHER_GUEST_PORT },
    ]);
    assert.equal(await connectOutcome(port), "refused", "the earlier forward was replaced");
    assert.equal((await echo(a, Buffer.from("via a"), "127.0.0.2")).toString(), "via a");
    assert.equal((await echo(b, Buffer.from("via b"))).toString(), "via b");
    // Back to the first set for the other tests.
    await client.portForward(`${port}:${GUEST_PORT}`);
    assert.equal(await connectOutcome(a), "refused");
    await echoWorks(port);
  });

  test("bind errors are -32000 and keep the current forwards", async () => {
    const busy: Server = createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
    const busyPort = (busy.address() as { port: number }).port;
    try {
      await assert.rejects(client.portForward(`${busyPort}:${GUEST_PORT}`), (err: unknown) => {
        assert.ok(err instanceof RPCError);
        assert.equal(err.code, -32000);
        assert.match(err.message, /bind local port-forward listener 127\.0\.0\.1:\d+/);
        return true;
      });
      // The same address:port twice in one call is a bind error too.
      const dup = await freePort();
      await assert.rejects(client.portForward(`${dup}:${GUEST_PORT}`, `${dup}:${OTHER_GUEST_PORT}`), (err: unknown) => err instanceof RPCError && err.code === -32000);
      await assert.rejects(client.portForward("0:70000"), /ports must be 1-65535/);
      await assert.rejects(client.portForwardWithAddresses(["localhost"], "80"), /not an IP address/);
    } finally {
      busy.close();
    }
  });

  test("a launch whose forward cannot be bound fails and leaves no sandbox behind", async () => {
    const busy: Server = createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
    const busyPort = (busy.address() as { port: number }).port;
    const before = (await readdir(join(home, "vms"))).sort();
    const other = newClient();
    try {
      await assert.rejects(other.launch(new Sandbox(BUSYBOX).withPortForward(busyPort, GUEST_PORT)), (err: unknown) => {
        assert.ok(err instanceof RPCError);
        assert.equal(err.code, -32000);
        assert.match(err.message, /bind local port-forward listener/);
        return true;
      });
      assert.deepEqual((await readdir(join(home, "vms"))).sort(), before, "no record of the refused sandbox");
    } finally {
      busy.close();
      await other.close();
    }
  });

  test("matchlock run -p forwards while the command runs", async () => {
    const p = await freePort();
    const run = spawn(process.execPath, [CLI, "run", "--image", BUSYBOX, "-p", `${p}:${GUEST_PORT}`, "--", "nc", "-l", "-p", String(GUEST_PORT), "-e", "/bin/cat"], {
      env: process.env, stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    run.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => run.on("exit", (code) => r(code)));
    try {
      assert.deepEqual(await eventually(async () => (stderr.includes(`Forwarding 127.0.0.1:${p} -> sandbox:${GUEST_PORT}`) ? [] : [stderr]), 180_000), []);
      await echoWorks(p); // the one connection nc serves
      assert.equal(await exited, 0, stderr);
    } finally {
      run.kill("SIGKILL");
    }
    const bad = await cli(["run", "--image", BUSYBOX, "-p", "1:2:3", "--", "true"]);
    assert.equal(bad.code, 125, "matchlock's own failure");
    assert.match(bad.stderr, /invalid port forward "1:2:3"/);
  });

  test("matchlock port-forward ID reaches a resident engine's sandbox until interrupted", async () => {
    const socketPath = join(await mkdtemp(join(tmpdir(), "matchlock-pf-")), "engine.sock");
    const server = await startServer(socketPath);
    const owner = new Client({ binaryPath: CLI, engineSocket: socketPath });
    try {
      const id = await owner.launch(new Sandbox(BUSYBOX));
      await startEcho(owner, GUEST_PORT);
      const p = await freePort();
      const fwd = spawn(process.execPath, [CLI, "port-forward", id, `${p}:${GUEST_PORT}`, "--socket", socketPath], {
        env: process.env, stdio: ["ignore", "pipe", "pipe"],
      });
      let stderr = "";
      fwd.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((r) => fwd.on("exit", (code) => r(code)));
      try {
        assert.deepEqual(await eventually(async () => (stderr.includes(`Forwarding 127.0.0.1:${p} -> sandbox:${GUEST_PORT}`) ? [] : [stderr]), 60_000), []);
        await echoWorks(p);
        fwd.kill("SIGINT");
        assert.equal(await exited, 130, stderr);
        assert.deepEqual(await eventually(async () => ((await connectOutcome(p)) === "refused" ? [] : ["still listening"])), []);
        // The owner's sandbox goes on.
        assert.equal((await owner.exec("echo alive")).stdout, "alive\n");
      } finally {
        fwd.kill("SIGKILL");
      }
      const unknown = await cli(["port-forward", "vm-00000000", "80", "--socket", socketPath]);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /VM vm-00000000 not found/);
    } finally {
      await owner.close();
      await server.stop();
    }
  });

  test("the listeners go away with the sandbox", async () => {
    const other = newClient();
    const p = await freePort();
    const id = await other.launch(new Sandbox(BUSYBOX).withPortForward(p, GUEST_PORT));
    await startEcho(other, GUEST_PORT);
    await echoWorks(p);
    await other.close();
    assert.equal(await connectOutcome(p), "refused");
    assert.deepEqual(await eventually(() => leftovers(id, home)), []);
    await other.remove();
  });
});
