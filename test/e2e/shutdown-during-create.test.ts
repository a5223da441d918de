// End to end: an engine told to stop (SIGTERM) or whose client goes away (EOF on stdin) while a
// `create` is still in progress aborts that create and undoes it before exiting: no process, runsc
// state, cgroup, network or state directory is left for the next engine's gc.
import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, test, type TestContext } from "node:test";
import { BACKEND, BUSYBOX, CLI, cli, eventually, firstVm, leftovers, networkLeftovers, processesOf, setUpE2E } from "../helpers/e2e.js";

type Stop = "SIGTERM" | "EOF";
/** When to stop the engine: as soon as the sandbox's state directory exists, or once its processes run. */
type Moment = "record written" | "processes running";

interface Run { engine: ChildProcessWithoutNullStreams; exit: Promise<number | null>; replies: any[]; stderr: () => string }

function startEngine(): Run {
  const engine = spawn(process.execPath, [CLI, "rpc"], { stdio: ["pipe", "pipe", "pipe"] });
  const replies: any[] = [];
  let out = "";
  let err = "";
  engine.stdout.on("data", (d: Buffer) => {
    out += d;
    for (let nl; (nl = out.indexOf("\n")) >= 0; out = out.slice(nl + 1)) replies.push(JSON.parse(out.slice(0, nl)));
  });
  engine.stderr.on("data", (d: Buffer) => (err += d));
  const exit = new Promise<number | null>((resolve) => engine.on("exit", (code) => resolve(code)));
  return { engine, exit, replies, stderr: () => err };
}

describe(`shutdown during create on ${BACKEND}`, { timeout: 10 * 60_000 }, () => {
  let home: string;
  before(async () => {
    home = await setUpE2E();
    await mkdir(join(home, "vms"), { recursive: true });
  });

  const cases: Array<[Stop, Moment]> = [["SIGTERM", "record written"], ["SIGTERM", "processes running"], ["EOF", "record written"], ["EOF", "processes running"]];
  for (const [stop, moment] of cases) {
    test(`${stop} once the ${moment === "record written" ? "sandbox's record is written" : "sandbox's processes run"}: the create is undone, nothing is left`, async (t) => {
      for (let attempt = 1; ; attempt++) {
        const vms = firstVm(home);
        const run = startEngine();
        try {
          run.engine.stdin.write(JSON.stringify({ jsonrpc: "2.0", method: "create", params: { image: BUSYBOX }, id: 1 }) + "\n");
          const id = await vms.id;
          if (moment === "processes running") {
            while ((await processesOf(id)).length === 0 && run.replies.length === 0) await new Promise((r) => setTimeout(r, 20));
          }
          if (run.replies.length > 0) {
            // The create won the race against the test's polling (a loaded machine): not what
            // is tested here. Close that sandbox and try again.
            await createWonTheRace(t, attempt, run, id, home);
            continue;
          }
          const t0 = Date.now();
          if (stop === "SIGTERM") run.engine.kill("SIGTERM");
          else run.engine.stdin.end();
          const code = await run.exit;
          t.diagnostic(`engine exited ${code} after ${Date.now() - t0} ms`);
          assert.equal(code, stop === "SIGTERM" ? 143 : 0, run.stderr());
          if (!/abandoning the create in progress/.test(run.stderr()) && run.replies[0]?.result) {
            // The create finished between the check above and the stop.
            await createWonTheRace(t, attempt, run, id, home);
            continue;
          }
          assert.match(run.stderr(), /abandoning the create in progress/);
          if (stop === "EOF") {
            // The client may still be reading: it learns that its create was cancelled.
            assert.equal(run.replies.length, 1);
            assert.equal(run.replies[0].error?.code, -32003, JSON.stringify(run.replies[0]));
          }
          // Everything was undone before the engine exited: no waiting for it.
          await assertNothingLeft(id, home);
          return;
        } finally {
          vms.stop();
          run.engine.kill("SIGKILL");
        }
      }
    });
  }

  test("EOF right behind a create and a pipelined exec: the reader is not held up, the create is undone", async () => {
    const vms = firstVm(home);
    const run = startEngine();
    try {
      // Both lines in one write: the exec waits for the create, but the EOF must still be seen.
      run.engine.stdin.write(JSON.stringify({ jsonrpc: "2.0", method: "create", params: { image: BUSYBOX }, id: 1 }) + "\n"
        + JSON.stringify({ jsonrpc: "2.0", method: "exec", params: { command: "echo never" }, id: 2 }) + "\n");
      const id = await vms.id;
      assert.equal(run.replies.length, 0, "the create must still be in progress at the EOF");
      run.engine.stdin.end();
      assert.equal(await run.exit, 0, run.stderr());
      assert.match(run.stderr(), /abandoning the create in progress/);
      const create = run.replies.find((r) => r.id === 1);
      assert.equal(create?.error?.code, -32003, JSON.stringify(run.replies));
      // The exec never ran: it is answered "cancelled" (or not at all), never with output.
      const exec = run.replies.find((r) => r.id === 2);
      if (exec) assert.equal(exec.error?.code, -32003, JSON.stringify(exec));
      await assertNothingLeft(id, home);
    } finally {
      vms.stop();
      run.engine.kill("SIGKILL");
    }
  });

  test("`matchlock run` given SIGTERM during its create: the create is undone, nothing is left", async (t) => {
    for (let attempt = 1; ; attempt++) {
      const vms = firstVm(home);
      const run = spawn(process.execPath, [CLI, "run", "--image", BUSYBOX, "--rm=false", "echo", "never"], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      run.stdout.on("data", (d: Buffer) => (out += d));
      run.stderr.on("data", (d: Buffer) => (out += d));
      const exit = new Promise<number | null>((resolve) => run.on("exit", (code) => resolve(code)));
      try {
        const id = await vms.id;
        while ((await processesOf(id)).length === 0) {
          assert.equal(out, "", "the command ran before the sandbox's processes were seen");
          await new Promise((r) => setTimeout(r, 20));
        }
        run.kill("SIGTERM");
        const code = await exit;
        if (out.includes("never") || out.includes(id)) {
          // The sandbox booted (run printed the id of the sandbox it keeps) and maybe ran the
          // command between the test's look and its SIGTERM (a loaded machine; seen once): not
          // what is tested here. Remove it and try again.
          assert.ok(attempt < 5, `the command ran before the SIGTERM, ${attempt} times`);
          t.diagnostic(`attempt ${attempt}: the command ran first (exit ${code}); trying again`);
          await cli(["kill", id]); // in case the SIGTERM came while it was being stopped
          const rm = await cli(["rm", id]);
          assert.equal(rm.code, 0, rm.stderr);
          await assertNothingLeft(id, home);
          continue;
        }
        assert.equal(code, 143, out);
        assert.doesNotMatch(out, /never/);
        await assertNothingLeft(id, home);
        return;
      } finally {
        vms.stop();
        run.kill("SIGKILL");
      }
    }
  });

  test("after those, a new engine creates and runs a sandbox as usual", async () => {
    const run = startEngine();
    try {
      const send = (m: object) => run.engine.stdin.write(JSON.stringify({ jsonrpc: "2.0", ...m }) + "\n");
      const reply = async (n: number) => {
        while (run.replies.length < n) await new Promise((r) => setTimeout(r, 20));
        return run.replies[n - 1];
      };
      send({ method: "create", params: { image: BUSYBOX }, id: 1 });
      const id = (await reply(1)).result.id as string;
      send({ method: "exec", params: { command: "echo fine" }, id: 2 });
      assert.equal(Buffer.from((await reply(2)).result.stdout, "base64").toString(), "fine\n");
      run.engine.stdin.end();
      assert.equal(await run.exit, 0);
      assert.deepEqual(await eventually(() => leftovers(id, home)), []);
    } finally {
      run.engine.kill("SIGKILL");
    }
  });
});

/**
 * The create finished before the engine could be stopped: ends that engine, removes the sandbox
 * it made, and lets the caller try again (at most 5 times: a create that always wins would mean
 * the test no longer tests anything).
 */
async function createWonTheRace(t: TestContext, attempt: number, run: Run, id: string, home: string): Promise<void> {
  assert.ok(attempt < 5, `the create finished before the engine could be stopped, ${attempt} times`);
  t.diagnostic(`attempt ${attempt}: the create finished first; trying again`);
  run.engine.stdin.end();
  await run.exit;
  assert.equal((await cli(["rm", id])).code, 0);
  await assertNothingLeft(id, home);
}

/** No process, file, network piece or record of the sandbox is left. */
async function assertNothingLeft(id: string, home: string): Promise<void> {
  assert.deepEqual(await leftovers(id, home), []);
  assert.deepEqual(await networkLeftovers(id), []);
  assert.deepEqual(await readdir(join(home, "vms")), []);
}
