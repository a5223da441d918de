// The warm spare of a resident engine, end to end on the suite's engine: a create exactly like
// the last closed sandbox gets a spare booted ahead, fresh and its own; anything else boots its
// own sandbox; a spare never outlives its engine, a kill or a change of image, and is never
// listed as anybody's sandbox.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import { Client, Sandbox } from "../../src/sdk/index.js";
import { ImageStore } from "../../src/engine/image/store.js";
import { BUSYBOX, CLI, cli, eventually, leftovers } from "../helpers/e2e.js";
import { startNetLab } from "../helpers/net-lab.js";
import { residentSuite, startServer, type Server } from "../helpers/resident.js";

const execFileP = promisify(execFile);

/** Ids of the spares this server has booted so far, in order; waits until there are `count`. */
async function spares(server: Server, count: number): Promise<string[]> {
  const booted = () => [...server.stderr().matchAll(/warm spare (vm-[0-9a-f]+) booted/g)].map((m) => m[1]!);
  for (const until = Date.now() + 120_000; booted().length < count && Date.now() < until;) await new Promise((r) => setTimeout(r, 50));
  assert.ok(booted().length >= count, `expected ${count} spare(s) booted; the engine said:\n${server.stderr()}`);
  return booted();
}

const listed = async () => (JSON.parse((await cli(["list", "--json"])).stdout) as Array<{ id: string }>).map((v) => v.id);
const handedOut = (server: Server, id: string) => server.stderr().includes(`warm spare ${id} handed out`);

describe("warm pool (resident engine)", () => {
  const engine = residentSuite();

  test("a create like the last closed sandbox gets the spare: booted ahead, fresh, unlisted until taken", async () => {
    const a = engine.client();
    const idA = await a.launch(new Sandbox(BUSYBOX));
    assert.equal((await a.exec("echo used > /tmp/mark")).exitCode, 0);
    await a.close();
    const [spare] = await spares(engine.server, 1);
    assert.notEqual(spare, idA);
    assert.ok((await leftovers(spare!, engine.home)).length > 0, "the spare runs");
    assert.ok(!(await listed()).includes(spare!), "a spare is nobody's sandbox: `list` leaves it out");

    const b = engine.client();
    const asked = new Date();
    assert.equal(await b.launch(new Sandbox(BUSYBOX)), spare);
    assert.ok(handedOut(engine.server, spare!));
    const createdAt = new Date(await readFile(join(engine.home, "vms", spare!, "created_at"), "utf8"));
    assert.ok(createdAt >= asked, "created when its client got it, not when it booted");
    const r = await b.exec("cat /tmp/mark 2>&1; hostname");
    assert.match(r.stdout, /No such file/, "nothing of the previous sandbox");
    assert.match(r.stdout, new RegExp(`^${spare}$`, "m"));
    assert.ok((await listed()).includes(spare!), "taken, it is listed like any sandbox");
    await b.close();
    assert.deepEqual(await eventually(() => leftovers(spare!, engine.home)), []);
  });

  test("a create that asks for anything else boots its own; the spare is replaced by one like the last closed", async () => {
    const [, spare] = await spares(engine.server, 2); // made when the previous test's sandbox closed
    const c = engine.client();
    const id = await c.launch(new Sandbox(BUSYBOX).withEnv("WHICH", "other"));
    assert.notEqual(id, spare);
    assert.equal((await c.exec("echo $WHICH")).stdout, "other\n");
    await c.close();
    const [, , next] = await spares(engine.server, 3);
    assert.notEqual(next, spare);
    // The spare it replaced stops, and its record goes: it never was anybody's.
    assert.deepEqual(await eventually(() => leftovers(spare!, engine.home)), []);
    assert.deepEqual(await eventually(async () => (existsSync(join(engine.home, "vms", spare!)) ? [spare!] : [])), []);
    // The new spare is like the sandbox that closed: the same request gets it.
    const d = engine.client();
    assert.equal(await d.launch(new Sandbox(BUSYBOX).withEnv("WHICH", "other")), next);
    assert.equal((await d.exec("echo $WHICH")).stdout, "other\n");
    await d.close();
  });

  test("an image imported again under the same name is not served from a spare made before", async () => {
    const base = await new ImageStore().resolve(BUSYBOX);
    assert.ok(base);
    const work = await mkdtemp(join(tmpdir(), "matchlock-warm-"));
    // A store of its own: the suites' shared one is not changed.
    const env = { MATCHLOCK_IMAGES: join(work, "images") };
    const imageWith = async (marker: string) => {
      await mkdir(join(work, marker));
      await writeFile(join(work, marker, marker), marker);
      const tar = join(work, `${marker}.tar`);
      await execFileP("tar", ["-cf", tar, "-C", base.rootfs, ".", "-C", join(work, marker), marker]);
      const imported = await cli(["image", "import", "local/warm-swap:latest", tar], undefined, env);
      assert.equal(imported.code, 0, imported.stderr);
    };
    await imageWith("first");
    const own = await startServer(join(engine.home, "run", "swap.sock"), env);
    try {
      const e = new Client({ engineSocket: own.socketPath, binaryPath: CLI });
      await e.launch(new Sandbox("local/warm-swap:latest"));
      await e.close();
      const [spare] = await spares(own, 1);
      await imageWith("second");
      const f = new Client({ engineSocket: own.socketPath, binaryPath: CLI });
      const id = await f.launch(new Sandbox("local/warm-swap:latest"));
      assert.notEqual(id, spare);
      assert.match(own.stderr(), new RegExp(`warm spare ${spare} not used: image local/warm-swap:latest changed`));
      assert.equal((await f.exec("cat /second")).stdout, "second");
      await f.close();
      assert.deepEqual(await eventually(() => leftovers(spare!, engine.home)), []);
    } finally {
      await own.stop();
      await rm(work, { recursive: true, force: true });
    }
  });

  test("`matchlock kill` of a spare stops it and removes its record; the next create boots its own", async () => {
    const sofar = (await spares(engine.server, 1)).length;
    const g = engine.client();
    await g.launch(new Sandbox(BUSYBOX).withEnv("WHICH", "kill"));
    await g.close();
    const made = await spares(engine.server, sofar + 1);
    const spare = made[made.length - 1]!;
    const killed = await cli(["kill", spare]);
    assert.equal(killed.code, 0, killed.stderr);
    assert.deepEqual(await eventually(() => leftovers(spare, engine.home)), []);
    assert.deepEqual(await eventually(async () => (existsSync(join(engine.home, "vms", spare)) ? [spare] : [])), []);
    const h = engine.client();
    const id = await h.launch(new Sandbox(BUSYBOX).withEnv("WHICH", "kill"));
    assert.notEqual(id, spare);
    assert.equal((await h.exec("echo $WHICH")).stdout, "kill\n");
    await h.close();
  });

  test("a sealed network's spare: its events go to the client that took it", async () => {
    const lab = await startNetLab(); // before the engine: it points the engines started after it at the lab
    const sealed = await startServer(join(engine.home, "run", "sealed.sock"));
    try {
      const request = () => new Sandbox(BUSYBOX).allowHost("allowed.test").allowPrivateIPs();
      const first = new Client({ engineSocket: sealed.socketPath, binaryPath: CLI });
      await first.launch(request());
      await first.close();
      const [spare] = await spares(sealed, 1);
      const taker = new Client({ engineSocket: sealed.socketPath, binaryPath: CLI });
      const events: Array<Record<string, unknown>> = [];
      taker.onEvent((e) => events.push(e as unknown as Record<string, unknown>));
      assert.equal(await taker.launch(request()), spare);
      const ok = await taker.exec("wget -q -O- http://allowed.test/hello");
      assert.equal(ok.stdout, "hello from allowed.test\n", ok.stderr);
      const refused = await taker.exec("wget -q -O- --header 'Host: other.test' http://allowed.test/hello");
      assert.notEqual(refused.exitCode, 0);
      assert.deepEqual(await eventually(async () => (events.some((e) => (e.network as Record<string, unknown>)?.blocked === true) ? [] : ["no blocked event yet"]), 10_000), []);
      await taker.close();
    } finally {
      await sealed.stop();
      await lab.stop();
    }
  });

  test("stopping the engine stops its spare and removes its record", async () => {
    const own = await startServer(join(engine.home, "run", "own.sock"));
    const i = new Client({ engineSocket: own.socketPath, binaryPath: CLI });
    await i.launch(new Sandbox(BUSYBOX));
    await i.close();
    const [spare] = await spares(own, 1);
    assert.equal(await own.stop(), 143);
    assert.deepEqual(await leftovers(spare!, engine.home), []);
    assert.equal(existsSync(join(engine.home, "vms", spare!)), false);
  });

  test("MATCHLOCK_WARM_POOL=0: no spare is made", async () => {
    const off = await startServer(join(engine.home, "run", "off.sock"), { MATCHLOCK_WARM_POOL: "0" });
    try {
      const j = new Client({ engineSocket: off.socketPath, binaryPath: CLI });
      await j.launch(new Sandbox(BUSYBOX));
      await j.close();
      const k = new Client({ engineSocket: off.socketPath, binaryPath: CLI });
      await k.launch(new Sandbox(BUSYBOX));
      await k.close();
      assert.doesNotMatch(off.stderr(), /warm spare/);
    } finally {
      await off.stop();
    }
    const bad = await cli(["serve", "--socket", join(engine.home, "run", "bad.sock")], undefined, { MATCHLOCK_WARM_POOL: "yes" });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /MATCHLOCK_WARM_POOL must be 0 or 1, got "yes"/);
  });
});
