// The default Client talks to this user's shared engine: clients reuse one engine, a sandbox
// still dies with its client, the engine leaves when idle, another build or engine environment
// gets an engine of its own, and clients racing to start it start one.
import assert from "node:assert/strict";
import { cp, mkdir, mkdtemp, readFile, symlink, utimes } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Client, MatchlockError, Sandbox } from "../../src/sdk/index.js";
import { pidAlive } from "../../src/engine/process-identity.js";
import { BACKEND, BUSYBOX, ROOT, eventually, leftovers, setUpE2E } from "../helpers/e2e.js";
import { clientScript, runClient, sharedEngines, stopSharedEngines } from "../helpers/shared-engine.js";

const ownerPid = async (home: string, id: string) => Number(await readFile(join(home, "vms", id, "pid"), "utf8"));

/** Runs `fn` with these environment variables set (a Client reads its environment when made). */
function withEnv<T>(vars: Record<string, string>, fn: () => T): T {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

describe("shared engine (the default Client)", () => {
  let home: string;
  let scratch: string;
  let script: string;
  const homes: string[] = [];
  /** A home of its own (a fresh engine key), in the same image store. */
  const otherHome = async () => {
    const h = await mkdtemp(join(tmpdir(), "matchlock-e2e-shared-"));
    homes.push(h);
    return h;
  };

  before(async () => {
    home = await setUpE2E();
    homes.push(home);
    scratch = await mkdtemp(join(tmpdir(), "matchlock-shared-scripts-"));
    script = await clientScript(scratch);
  });
  after(async () => {
    await stopSharedEngines(...homes);
  });

  test("clients share one engine, each with its own sandbox; `await using` removes the record", async () => {
    let idA: string;
    {
      await using a = new Client();
      const b = new Client();
      const ids = await Promise.all([a.launch(new Sandbox(BUSYBOX)), b.launch(new Sandbox(BUSYBOX))]);
      idA = ids[0];
      const [outA, outB] = await Promise.all([a.exec("hostname"), b.exec("hostname")]);
      assert.deepEqual([outA.stdout, outB.stdout], [`${ids[0]}\n`, `${ids[1]}\n`]);
      const engines = await sharedEngines(home);
      assert.equal(engines.length, 1, JSON.stringify(engines));
      assert.deepEqual([await ownerPid(home, ids[0]), await ownerPid(home, ids[1])], [engines[0]!.pid, engines[0]!.pid]);
      await b.close();
      assert.deepEqual(await eventually(() => leftovers(ids[1], home)), []);
      assert.equal((await a.exec("echo still")).stdout, "still\n", "closing one client leaves the other's sandbox alone");
      await b.remove();
    }
    assert.deepEqual(await eventually(() => leftovers(idA, home)), []);
    assert.equal(existsSync(join(home, "vms", idA)), false, "await using removed the record");
    assert.equal((await sharedEngines(home)).length, 1, "the engine stays for the next client");
  });

  test("a sandbox dies with its client's process; the engine and other clients' sandboxes live on", async () => {
    await using survivor = new Client();
    await survivor.launch(new Sandbox(BUSYBOX));
    const doomed = runClient(script, "hold", { IMAGE: BUSYBOX });
    const id = await doomed.firstLine;
    const [engine] = await sharedEngines(home);
    assert.equal(await ownerPid(home, id), engine!.pid, "the killed client's sandbox ran in the shared engine");
    assert.ok((await leftovers(id, home)).length > 0, "its sandbox runs");
    doomed.proc.kill("SIGKILL");
    await doomed.exited;
    assert.deepEqual(await eventually(() => leftovers(id, home)), []);
    assert.deepEqual(await eventually(async () => {
      const s = await readFile(join(home, "vms", id, "status"), "utf8");
      return s === "stopped" ? [] : [s];
    }), []);
    assert.equal((await survivor.exec("echo alive")).stdout, "alive\n");
    assert.ok(pidAlive(engine!.pid), "the engine lives on");
  });

  test("an idle engine exits and removes its socket; the next client starts another", async () => {
    const idleHome = await otherHome();
    const env = { MATCHLOCK_HOME: idleHome, MATCHLOCK_SHARED_ENGINE_IDLE: "1" };
    const client = withEnv(env, () => new Client());
    const id = await client.launch(new Sandbox(BUSYBOX));
    const [engine] = await sharedEngines(idleHome);
    assert.ok(engine, "an engine serves the client");
    // A connected client keeps it, however long it stays (here twice the idle time).
    await new Promise((r) => setTimeout(r, 2000));
    assert.ok(pidAlive(engine.pid), "not idle while a client is connected");
    assert.equal((await client.exec("echo still")).stdout, "still\n");
    await client.close();
    assert.deepEqual(await eventually(async () => (pidAlive(engine.pid) ? ["engine running"] : [])), []);
    assert.equal(existsSync(engine.socket), false, "its socket is gone");
    assert.deepEqual(await eventually(() => leftovers(id, idleHome)), []);
    const next = withEnv(env, () => new Client());
    await next.start();
    const [second] = await sharedEngines(idleHome);
    assert.ok(second && second.pid !== engine.pid && second.socket === engine.socket, "a new engine on the same socket");
    await next.close();
  });

  test("another build, or another engine environment, is not given this engine", async () => {
    const own = await otherHome();
    const env = { MATCHLOCK_HOME: own };
    const started = (c: Client) => c.start().then(() => c);
    const first = await started(withEnv(env, () => new Client()));
    const other = BACKEND === "microvm" ? "gvisor" : "microvm";
    const otherBackend = await started(withEnv({ ...env, MATCHLOCK_BACKEND: other }, () => new Client()));
    assert.equal((await sharedEngines(own)).length, 2, "MATCHLOCK_BACKEND differs: a second engine");
    // Another build: a copy of the package (another install), then the same copy rebuilt.
    const copy = join(scratch, "package-copy");
    await mkdir(copy);
    await cp(join(ROOT, "dist"), join(copy, "dist"), { recursive: true });
    for (const name of ["node_modules", "guest", "host", "package.json"]) await symlink(join(ROOT, name), join(copy, name));
    const copyScript = await clientScript(copy, copy);
    assert.equal(await runClient(copyScript, "start", env).firstLine, "started");
    const afterCopy = await sharedEngines(own);
    assert.equal(afterCopy.length, 3, "another install: a third engine");
    const copied = afterCopy.find((e) => e.entry.startsWith(copy));
    assert.ok(copied, JSON.stringify(afterCopy));
    const later = new Date(Date.now() + 60_000);
    await utimes(join(copy, "dist", "src", "cli", "main.js"), later, later);
    assert.equal(await runClient(copyScript, "start", env).firstLine, "started");
    const afterRebuild = await sharedEngines(own);
    assert.equal(afterRebuild.length, 4, "the copy rebuilt: a fourth engine");
    assert.ok(pidAlive(copied.pid), "the older build's engine is left alone (it leaves when idle)");
    await Promise.all([first.close(), otherBackend.close()]);
  });

  test("clients racing to start the engine start one; a killed one is replaced", async () => {
    const raceHome = await otherHome();
    const env = { MATCHLOCK_HOME: raceHome };
    const others = Array.from({ length: 3 }, () => runClient(script, "start", env));
    const here = Array.from({ length: 2 }, () => withEnv(env, () => new Client()));
    await Promise.all([...here.map((c) => c.start()), ...others.map(async (o) => assert.equal(await o.firstLine, "started"))]);
    assert.deepEqual(await Promise.all(others.map((o) => o.exited)), [0, 0, 0]);
    const engines = await sharedEngines(raceHome);
    assert.equal(engines.length, 1, JSON.stringify(engines));
    const log = await readFile(engines[0]!.socket.replace(/\.sock$/, ".log"), "utf8");
    assert.equal(log.match(/serving on/g)?.length, 1, log);
    await here[1]!.close();
    // A killed engine: its client learns it, and the next client replaces its stale socket.
    process.kill(engines[0]!.pid, "SIGKILL");
    await assert.rejects(here[0]!.exec("true"), (err: unknown) => err instanceof MatchlockError && err.kind === "engine_lost");
    await here[0]!.close();
    const next = withEnv(env, () => new Client());
    await next.start();
    const [replacement] = await sharedEngines(raceHome);
    assert.ok(replacement && replacement.pid !== engines[0]!.pid && replacement.socket === engines[0]!.socket, JSON.stringify(replacement));
    await next.close();
  });
});
