// A sandbox record names its owner by pid and start time, so a reused pid is not mistaken for it.
import assert from "node:assert/strict";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { pidAlive, processStart, sameProcessAlive } from "../../src/engine/process-identity.js";
import { createVmRecord, newVmId, readVm, reconcile } from "../../src/engine/sandbox/state.js";

describe("process identity", () => {
  test("our own process is alive under its start time, and only under it", async () => {
    const start = await processStart(process.pid);
    assert.match(start ?? "", /^\d+$/);
    assert.equal(await sameProcessAlive(process.pid, start!), true);
    assert.equal(await sameProcessAlive(process.pid, String(Number(start) + 1)), false);
    assert.equal(await processStart(2 ** 22 + 7), undefined); // above pid_max: no such process
  });

  test("a zombie (exited, never reaped) is dead, not alive", async () => {
    // The child exits once its parent has become `sleep`, which never reaps it (a child that
    // exits at once can be reaped by the shell before its exec). It waits for that exec rather than
    // for a fixed time: a loaded machine may hold the shell back longer than any sleep.
    const childScript = `( while read c < /proc/$$/comm && [ "$c" != sleep ]; do sleep 0.01; done ) & echo $!; exec sleep 30`;
    const parent = spawn("sh", ["-c", childScript], { stdio: ["ignore", "pipe", "ignore"] });
    try {
      const [line] = (await once(parent.stdout!, "data")) as [Buffer];
      const zombie = Number(line.toString().trim());
      let state = "";
      // A deadline, not a count of polls: a loaded machine may take seconds to get here.
      for (const deadline = Date.now() + 30_000; state !== "Z" && Date.now() < deadline;) {
        state = (await readFile(`/proc/${zombie}/stat`, "utf8")).split(") ")[1]!.split(" ")[0]!;
        if (state !== "Z") await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(state, "Z", "the child became a zombie");
      assert.equal(pidAlive(zombie), false);
      assert.equal(await processStart(zombie), undefined);
      assert.equal(pidAlive(parent.pid!), true);
    } finally {
      parent.kill("SIGKILL");
    }
  });

  test("a record whose pid now belongs to another process counts as crashed", async () => {
    process.env.MATCHLOCK_HOME = await mkdtemp(join(tmpdir(), "matchlock-identity-"));
    const id = newVmId();
    const dir = await createVmRecord(id, { image: "x" });
    assert.equal((await reconcile((await readVm(id))!)).status, "running");
    // Same pid (ours), but the start time of some earlier process that had it.
    await writeFile(join(dir, "pid_start"), "1");
    assert.equal((await reconcile((await readVm(id))!)).status, "crashed");
    assert.equal((await readVm(id))!.status, "crashed");
  });
});
