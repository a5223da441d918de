// End to end: sandboxes come and go without leaving anything behind, whoever dies first.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { MatchlockError, RPCError, Sandbox } from "../../src/sdk/index.js";
import { RawSession } from "../helpers/raw-rpc.js";
import { BACKEND, BUSYBOX, CLI, PYTHON, ROOT, cli, eventually, leftovers, liveProcessesInGroup, newClient, setUpE2E } from "../helpers/e2e.js";

describe("lifecycle", () => {
  let home: string;
  before(async () => {
    home = await setUpE2E();
  });

  test("close + remove leave no process, runsc state, cgroup, VM files or state dir", async () => {
    const client = newClient();
    const id = await client.launch(new Sandbox(BUSYBOX).addSecret("TOKEN", "real-secret-value", "example.com"));
    assert.match(id, /^vm-[0-9a-f]{8}$/);
    assert.equal(client.vmId, id);
    const config = await readFile(join(home, "vms", id, "config.json"), "utf8");
    assert.ok(!config.includes("real-secret-value"), "secret values must not be persisted");
    assert.equal((await client.exec("echo alive")).stdout, "alive\n");
    await client.close();
    assert.equal(await readFile(join(home, "vms", id, "status"), "utf8"), "stopped");
    await client.remove();
    assert.equal(existsSync(join(home, "vms", id)), false);
    assert.deepEqual(await eventually(() => leftovers(id, home)), []);
  });

  test("two sandboxes at once are separate", async () => {
    await using a = newClient();
    await using b = newClient();
    await Promise.all([a.launch(new Sandbox(BUSYBOX)), b.launch(new Sandbox(BUSYBOX))]);
    assert.notEqual(a.vmId, b.vmId);
    await a.writeFile("/workspace/who", "a");
    await b.writeFile("/workspace/who", "b");
    const [ra, rb] = await Promise.all([a.exec("cat /workspace/who; hostname"), b.exec("cat /workspace/who; hostname")]);
    assert.equal(ra.stdout, `a${a.vmId}\n`);
    assert.equal(rb.stdout, `b${b.vmId}\n`);
  });

  test("close does not wait for running commands: they end with an error", async () => {
    const client = newClient();
    await client.launch(new Sandbox(BUSYBOX));
    const running = client.execStream("sleep 600");
    running.catch(() => {});
    await new Promise((r) => setTimeout(r, 300));
    await client.close();
    // Had close waited for it, the command would have finished normally (after 600 s).
    await assert.rejects(running, MatchlockError);
    await client.remove();
  });

  test("a sandbox can ask for the other engine than the engine-wide choice", async () => {
    const other = BACKEND === "microvm" ? "gvisor" : "microvm";
    await using client = newClient();
    const id = await client.launch(new Sandbox(BUSYBOX).withBackend(other));
    const config = JSON.parse(await readFile(join(home, "vms", id, "config.json"), "utf8")) as { backend: string };
    assert.equal(config.backend, other);
    assert.equal((await client.exec("hostname")).stdout, `${id}\n`);
    const log = await readFile(join(home, "vms", id, "logs", "vm.log"), "utf8");
    if (other === "microvm") assert.match(log, /microvm: (KVM|TCG)/);
    else assert.doesNotMatch(log, /microvm:/);
  });

  test("calls after close, and before launch, give clear errors", async () => {
    const client = newClient();
    await assert.rejects(client.exec("true"), (err: unknown) => err instanceof MatchlockError);
    await client.launch(new Sandbox(BUSYBOX));
    await client.close();
    await client.close(); // idempotent
    await assert.rejects(client.exec("true"), (err: unknown) => err instanceof MatchlockError && /not running|closed/i.test(err.message));
    await client.remove();
  });

  test("timeout_seconds is enforced: the sandbox stops and calls say why", async () => {
    await using client = newClient();
    const id = await client.launch(new Sandbox(BUSYBOX).withTimeout(2));
    await assert.rejects(client.exec("sleep 30"), (err: unknown) => {
      assert.ok(err instanceof RPCError, String(err));
      assert.match(err.message, /timeout of 2 s/);
      assert.equal(err.kind, "timeout");
      return true;
    });
    await assert.rejects(client.exec("true"), /timeout of 2 s/);
    assert.deepEqual(await eventually(() => leftovers(id, home)), []);
  });

  test("set_timeout gives a sandbox without one a deadline, extends it and shortens it, counted from then", async () => {
    await using client = newClient();
    await client.launch(new Sandbox(BUSYBOX));
    await client.setTimeout(5);
    await client.setTimeout(3600); // replaces the 5 s deadline (well before it passes, even on a loaded host)
    // Ends at least 6 s after the 5 s deadline was set: had it stayed, this would have failed.
    assert.equal((await client.exec("sleep 6; echo alive")).stdout, "alive\n");
    await client.setTimeout(1);
    await assert.rejects(client.exec("sleep 600"), /timeout of 1 s/);
  });

  test("a plain timeout_seconds, as upstream's SDKs always send, is stored, not enforced", async () => {
    const s = new RawSession();
    try {
      const created = await s.call("create", { image: BUSYBOX, resources: { timeout_seconds: 1 } }, 1);
      assert.match(created.result?.id ?? JSON.stringify(created), /^vm-/);
      // Ends at least 3 s after the create: any enforced 1 s deadline would have stopped it.
      const r = await s.call("exec", { command: "sleep 3; echo alive" }, 2);
      assert.equal(Buffer.from(r.result?.stdout ?? "", "base64").toString(), "alive\n", JSON.stringify(r));
      assert.equal((await s.call("close", {}, 3)).error, undefined);
    } finally {
      s.proc.kill("SIGKILL");
    }
  });

  test("an unknown image is a VM error naming the image", async () => {
    await using client = newClient();
    await assert.rejects(client.launch(new Sandbox("local/does-not-exist:1")), (err: unknown) => {
      assert.ok(err instanceof MatchlockError);
      assert.match(err.message, /does-not-exist/);
      assert.equal(err.kind, "not_found");
      return true;
    });
  });

  test("if the SDK's process is SIGKILLed, the engine tears the sandbox down", async () => {
    // A separate Node process plays the user's program; we kill it without warning.
    const script = `
      import { Client, Sandbox } from ${JSON.stringify(join(ROOT, "dist/src/sdk/index.js"))};
      const c = new Client({ binaryPath: ${JSON.stringify(CLI)} });
      const id = await c.launch(new Sandbox(${JSON.stringify(BUSYBOX)}));
      console.log(id);
      setInterval(() => {}, 1000);`;
    const user = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    const id = await new Promise<string>((resolve) => user.stdout.once("data", (d) => resolve(String(d).trim())));
    assert.match(id, /^vm-/);
    assert.ok((await leftovers(id, home)).length > 0, "the sandbox should be running");
    user.kill("SIGKILL");
    assert.deepEqual(await eventually(() => leftovers(id, home)), []);
  });

  test("if the engine is SIGKILLed, the sandbox dies with it", async () => {
    const engine = spawn(process.execPath, [CLI, "rpc"], { stdio: ["pipe", "pipe", "ignore"] });
    engine.stdin.write(JSON.stringify({ jsonrpc: "2.0", method: "create", params: { image: BUSYBOX }, id: 1 }) + "\n");
    const line = await new Promise<string>((resolve) => engine.stdout.once("data", (d) => resolve(String(d))));
    const id = JSON.parse(line).result.id as string;
    engine.kill("SIGKILL");
    assert.deepEqual(await eventually(() => leftovers(id, home)), []);
    // Its record now shows as crashed, and rm works on it.
    const list = await cli(["list", "--json"]);
    assert.equal((JSON.parse(list.stdout) as Array<{ id: string; status: string }>).find((v) => v.id === id)?.status, "crashed");
    assert.equal((await cli(["rm", id])).stdout, `Removed ${id}\n`);
    assert.equal(existsSync(join(home, "vms", id)), false);
  });

  test("if engine and runsc are killed together, gc reclaims what they left", async () => {
    const engine = spawn(process.execPath, [CLI, "rpc"], { stdio: ["pipe", "pipe", "ignore"], detached: true });
    engine.stdin.write(JSON.stringify({ jsonrpc: "2.0", method: "create", params: { image: BUSYBOX }, id: 1 }) + "\n");
    const line = await new Promise<string>((resolve) => engine.stdout.once("data", (d) => resolve(String(d))));
    const id = JSON.parse(line).result.id as string;
    process.kill(-engine.pid!, "SIGKILL"); // the engine's whole process group, runsc or qemu included
    // gc must find them dead: wait until they are (was: a 500 ms sleep, short on a loaded machine).
    assert.deepEqual(await eventually(() => liveProcessesInGroup(engine.pid!)), []);
    const gc = await cli(["gc", id]);
    assert.equal(gc.code, 0, gc.stderr);
    if (BACKEND !== "microvm") {
      // runsc keeps its container's state when it is killed with its engine; gc deletes it.
      assert.match(gc.stdout, new RegExp(`${id}: cleaned runsc container\nReconciled 1 VMs`));
    } else {
      // QEMU dies with its engine (pdeathsig): there is nothing left to clean.
      assert.match(gc.stdout, new RegExp(`${id}: no resources to clean\nReconciled 1 VMs`));
    }
    assert.deepEqual(await eventually(() => leftovers(id, home)), []);
    assert.match((await cli(["gc", id])).stdout, /no resources to clean/);
    assert.equal((await cli(["rm", id])).code, 0);
  });

  test("the seed README's builder example runs python", async () => {
    await using client = newClient();
    await client.launch(
      new Sandbox(PYTHON).withCPUs(2).withMemory(512).withDiskSize(2048).withTimeout(300)
        .allowHost("api.openai.com", "pypi.org").blockPrivateIPs()
        .addSecret("API_KEY", "sk-test", "api.openai.com"),
    );
    const r = await client.exec("python3 -c 'print(1+1)'");
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, "2\n");
  });
});
