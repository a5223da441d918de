// Removing a dead gVisor sandbox's cgroups (src/engine/backends/gvisor/memory-cgroup.ts): only a
// cgroup that still has processes (EBUSY) is waited for; a missing one is done; any other error
// fails at once with the path and the reason. Needs root (it makes a real cgroup).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { CGROUP_BUSY_WAIT_MS, removeCgroupDir } from "../../src/engine/backends/gvisor/memory-cgroup.js";

const T = { timeout: 30_000 };
/** "At once" means well before the EBUSY wait would end, however loaded the machine. */
const AT_ONCE_MS = CGROUP_BUSY_WAIT_MS / 2;
/** A controller hierarchy to make a test cgroup in: v1's memory one, else the v2 root. */
const CGROUP_ROOT = existsSync("/sys/fs/cgroup/memory/memory.limit_in_bytes") ? "/sys/fs/cgroup/memory" : "/sys/fs/cgroup";

describe("cgroup removal", () => {
  test("a cgroup that is already gone is done at once", T, async () => {
    const t0 = Date.now();
    await removeCgroupDir(join(tmpdir(), `matchlock-no-such-cgroup-${process.pid}`));
    assert.ok(Date.now() - t0 < AT_ONCE_MS, `took ${Date.now() - t0} ms`);
  });

  test("an error other than EBUSY fails at once, naming the directory and the reason", T, async () => {
    const dir = await mkdtemp(join(tmpdir(), "matchlock-not-a-cgroup-"));
    try {
      await writeFile(join(dir, "file"), "x"); // rmdir: ENOTEMPTY, which no wait would fix
      const t0 = Date.now();
      await assert.rejects(removeCgroupDir(dir), (err: Error) => {
        assert.match(err.message, new RegExp(`cannot remove cgroup ${dir}: .*ENOTEMPTY`));
        return true;
      });
      assert.ok(Date.now() - t0 < AT_ONCE_MS, `took ${Date.now() - t0} ms`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a cgroup with a process in it (EBUSY) is waited for until the process exits", T, async () => {
    const dir = join(CGROUP_ROOT, `matchlock-unit-${process.pid}`);
    await mkdir(dir);
    const sleeper = spawn("sleep", ["30"], { stdio: "ignore" });
    try {
      await writeFile(join(dir, "cgroup.procs"), String(sleeper.pid));
      const removal = removeCgroupDir(dir);
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(existsSync(dir), "removed while a process was still in it");
      sleeper.kill("SIGKILL");
      await removal;
      assert.equal(existsSync(dir), false);
    } finally {
      sleeper.kill("SIGKILL");
      await new Promise((r) => setTimeout(r, 100));
      await removeCgroupDir(dir).catch(() => {});
    }
  });

  test("a cgroup still busy when the wait is over fails clearly", T, async () => {
    const dir = join(CGROUP_ROOT, `matchlock-unit-busy-${process.pid}`);
    await mkdir(dir);
    const sleeper = spawn("sleep", ["30"], { stdio: "ignore" });
    try {
      await writeFile(join(dir, "cgroup.procs"), String(sleeper.pid));
      await assert.rejects(removeCgroupDir(dir, 300), /cannot remove cgroup .*did not exit within 0.3 s \(EBUSY\)/);
    } finally {
      sleeper.kill("SIGKILL");
      await new Promise((r) => setTimeout(r, 100));
      await removeCgroupDir(dir).catch(() => {});
    }
  });
});
