// End to end: a client that gives up on `create` (timeoutMs, AbortSignal, or a cancel that
// crosses the reply) leaves no sandbox and no state directory behind, and can create again.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { watch } from "node:fs";
import { mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { RPCError, Sandbox, TimeoutError } from "../../src/sdk/index.js";
import { BUSYBOX, CLI, eventually, leftovers, newClient, setUpE2E } from "../helpers/e2e.js";

/** Records every sandbox directory that appears under <home>/vms, and calls `onFirst` for the first. */
function watchVms(home: string, onFirst: () => void = () => {}) {
  const seen = new Set<string>();
  const w = watch(join(home, "vms"), (_event, name) => {
    if (name && /^vm-[0-9a-f]{8}$/.test(String(name)) && !seen.has(String(name))) {
      seen.add(String(name));
      if (seen.size === 1) onFirst();
    }
  });
  return { seen, stop: () => w.close() };
}

describe("cancelled create", () => {
  let home: string;
  before(async () => {
    home = await setUpE2E();
    await mkdir(join(home, "vms"), { recursive: true });
  });

  /** Nothing of the sandboxes seen is left: no process, runsc state, cgroup or directory. */
  async function assertNothingLeft(seen: Set<string>): Promise<void> {
    for (const id of seen) assert.deepEqual(await eventually(() => leftovers(id, home)), [], id);
    assert.deepEqual(await eventually(async () => readdir(join(home, "vms"))), []);
  }

  test("create given up by timeoutMs: torn down, no state directory; the client can create again", async (t) => {
    const vms = watchVms(home);
    await using client = newClient();
    await client.start(); // so the timeout counts the create alone (no create is done within 50 ms)
    try {
      await assert.rejects(client.launch(new Sandbox(BUSYBOX), { timeoutMs: 50 }), TimeoutError);
      assert.equal(client.vmId, undefined);
      await assertNothingLeft(vms.seen);
      t.diagnostic(`sandboxes begun and undone: ${vms.seen.size}`);
    } finally {
      vms.stop();
    }
    const id = await client.launch(new Sandbox(BUSYBOX));
    assert.equal((await client.exec("echo ok")).stdout, "ok\n");
    await client.close();
    await client.remove();
    assert.deepEqual(await eventually(() => leftovers(id, home)), []);
  });

  test("create aborted (AbortSignal) once its state directory exists: the sandbox is undone", async () => {
    const abort = new AbortController();
    const vms = watchVms(home, () => abort.abort());
    await using client = newClient();
    try {
      await assert.rejects(client.launch(new Sandbox(BUSYBOX), { signal: abort.signal }), (err: unknown) => {
        assert.ok(err instanceof RPCError && err.code === RPCError.CANCELLED, String(err));
        return true;
      });
      assert.equal(vms.seen.size, 1);
      await assertNothingLeft(vms.seen);
    } finally {
      vms.stop();
    }
  });

  test("a cancel that arrives after create replied still undoes the sandbox", async () => {
    const engine = spawn(process.execPath, [CLI, "rpc"], { stdio: ["pipe", "pipe", "ignore"] });
    const replies: Array<{ id: number; result?: any; error?: any }> = [];
    let buffered = "";
    const waiters: Array<() => void> = [];
    engine.stdout.on("data", (d: Buffer) => {
      buffered += d;
      for (let nl; (nl = buffered.indexOf("\n")) >= 0; buffered = buffered.slice(nl + 1)) replies.push(JSON.parse(buffered.slice(0, nl)));
      waiters.splice(0).forEach((w) => w());
    });
    const reply = async (id: number) => {
      while (!replies.some((r) => r.id === id)) await new Promise<void>((r) => waiters.push(r));
      return replies.find((r) => r.id === id)!;
    };
    const send = (m: object) => engine.stdin.write(JSON.stringify({ jsonrpc: "2.0", ...m }) + "\n");
    try {
      send({ method: "create", params: { image: BUSYBOX }, id: 1 });
      const id = (await reply(1)).result.id as string;
      assert.ok((await leftovers(id, home)).length > 0, "the sandbox should be running");
      send({ method: "cancel", params: { id: 1 }, id: 2 });
      assert.deepEqual((await reply(2)).result, { cancelled: true });
      await assertNothingLeft(new Set([id]));
      // The session can make a new sandbox.
      send({ method: "create", params: { image: BUSYBOX }, id: 3 });
      const second = (await reply(3)).result.id as string;
      send({ method: "exec", params: { command: "echo again" }, id: 4 });
      assert.equal(Buffer.from((await reply(4)).result.stdout, "base64").toString(), "again\n");
      send({ method: "close", id: 5 });
      await reply(5);
      assert.deepEqual(await eventually(() => leftovers(second, home)), []);
    } finally {
      engine.kill("SIGKILL");
    }
  });
});
