// End to end through a resident engine (`matchlock serve`): SDK clients with engineSocket get
// real sandboxes, many at once, and nothing is left behind whoever disconnects or dies.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Sandbox } from "../../src/sdk/index.js";
import { BUSYBOX, cli, eventually, leftovers } from "../helpers/e2e.js";
import { residentSuite, SocketSession, startServer } from "../helpers/resident.js";

const status = (home: string, id: string) => readFile(join(home, "vms", id, "status"), "utf8");

describe("resident engine", () => {
  const engine = residentSuite();

  test("launch, exec, files and close through the socket; the server lives on", async () => {
    const c = engine.client();
    const id = await c.launch(new Sandbox(BUSYBOX));
    assert.equal((await c.exec("echo hello; echo oops >&2; exit 3")).exitCode, 3);
    assert.equal((await c.exec("echo hello")).stdout, "hello\n");
    await c.writeFile("/tmp/f", "through the socket");
    assert.equal((await c.readFile("/tmp/f")).toString(), "through the socket");
    const chunks: string[] = [];
    await c.execStream("for i in 1 2 3; do echo $i; done", { stdout: (s) => chunks.push(s.toString()) });
    assert.equal(chunks.join(""), "1\n2\n3\n");
    await c.close();
    assert.equal(await status(engine.home, id), "stopped");
    await c.remove();
    assert.deepEqual(await eventually(() => leftovers(id, engine.home)), []);
    assert.equal(engine.server.proc.exitCode, null, "the server keeps running after a client closed");
  });

  test("a client that disconnects without close leaves no sandbox behind", async () => {
    const s = new SocketSession(engine.server.socketPath);
    const created = await s.call("create", { image: BUSYBOX }, 1);
    const id = created.result.id as string;
    assert.ok((await leftovers(id, engine.home)).length > 0, "the sandbox should be running");
    s.socket.destroy(); // no close, not even a clean EOF
    assert.deepEqual(await eventually(() => leftovers(id, engine.home)), []);
    // The record is marked last, once everything is gone.
    assert.deepEqual(await eventually(async () => ((await status(engine.home, id)) === "stopped" ? [] : [await status(engine.home, id)])), []);
  });

  test("many clients at once, each with its own sandbox", async () => {
    const clients = Array.from({ length: 4 }, () => engine.client());
    const ids = await Promise.all(clients.map((c) => c.launch(new Sandbox(BUSYBOX))));
    assert.equal(new Set(ids).size, 4);
    const outs = await Promise.all(clients.map((c, i) => c.exec(`echo client-${i}; hostname`)));
    outs.forEach((r, i) => assert.equal(r.stdout, `client-${i}\n${ids[i]}\n`));
    // Closing one does not disturb the others.
    await clients[0]!.close();
    assert.deepEqual((await Promise.all(clients.slice(1).map((c) => c.exec("echo still")))).map((r) => r.stdout), ["still\n", "still\n", "still\n"]);
    await Promise.all(clients.map((c) => c.close()));
    for (const id of ids) assert.deepEqual(await eventually(() => leftovers(id, engine.home)), [], id);
  });

  test("`matchlock kill ID` stops that sandbox only, not the server and its other sandboxes", async () => {
    const [a, b] = [engine.client(), engine.client()];
    const [idA, idB] = await Promise.all([a.launch(new Sandbox(BUSYBOX)), b.launch(new Sandbox(BUSYBOX))]);
    const killed = await cli(["kill", idA]);
    assert.equal(killed.stdout, `Killed ${idA}\n`, killed.stderr);
    assert.deepEqual(await eventually(() => leftovers(idA, engine.home)), []);
    await assert.rejects(a.exec("true"), /closed unexpectedly|not running/);
    assert.equal((await b.exec("echo alive")).stdout, "alive\n");
    assert.equal(engine.server.proc.exitCode, null, "the server keeps running");
    await Promise.all([a.close(), b.close()]);
    assert.deepEqual(await eventually(() => leftovers(idB, engine.home)), []);
  });

  test("a SIGKILLed server's sandboxes are reclaimed by the next engine's gc", async () => {
    const doomed = await startServer(join(engine.home, "doomed.sock"), {}, { detached: true });
    const sessions = [new SocketSession(doomed.socketPath), new SocketSession(doomed.socketPath)];
    const ids = await Promise.all(sessions.map(async (s) => (await s.call("create", { image: BUSYBOX }, 1)).result.id as string));
    // The server's whole process group: runsc or QEMU die (or are left) with it, its records say "running".
    process.kill(-doomed.proc.pid!, "SIGKILL");
    await doomed.exited;
    // The next engine (here a fresh server on the same socket, which is stale now) reclaims them.
    const next = await startServer(doomed.socketPath);
    try {
      for (const id of ids) assert.deepEqual(await eventually(() => leftovers(id, engine.home)), [], id);
      const list = JSON.parse((await cli(["list", "--json"])).stdout) as Array<{ id: string; status: string }>;
      for (const id of ids) assert.equal(list.find((v) => v.id === id)?.status, "crashed");
      for (const id of ids) assert.match((await cli(["gc", id])).stdout, new RegExp(`${id}: no resources to clean`));
    } finally {
      await next.stop();
    }
  });
});
