// A sandbox record names its owner by pid and start time, so a reused pid is not mistaken for it.
import assert from "node:assert/strict";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { processStart, sameProcessAlive } from "../../src/engine/process-identity.js";
import { createVmRecord, newVmId, readVm, reconcile } from "../../src/engine/sandbox/state.js";

describe("process identity", () => {
  test("our own process is alive under its start time, and only under it", async () => {
    const start = await processStart(process.pid);
    assert.match(start ?? "", /^\d+$/);
    assert.equal(await sameProcessAlive(process.pid, start!), true);
    assert.equal(await sameProcessAlive(process.pid, String(Number(start) + 1)), false);
    assert.equal(await processStart(2 ** 22 + 7), undefined); // above pid_max: no such process
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
