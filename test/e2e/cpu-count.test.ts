// End to end: the guest's CPU count follows `cpus`, not the host's, and a fraction is a CPU quota:
// the guest's commands see ceil(cpus) CPUs (nproc: their affinity; at most the host's on gVisor,
// whose runsc shows its guest at least 2 and the agent confines commands to ceil(cpus) of them),
// and the sandbox's host cgroup (gVisor's, or the micro-VM's QEMU's) holds a quota of `cpus`
// CPUs' worth of time per period.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { before, describe, test } from "node:test";
import { Sandbox } from "../../src/sdk/index.js";
import { BACKEND, BUSYBOX, newClient, setUpE2E } from "../helpers/e2e.js";

/** The CPU quota of the sandbox's host cgroup, in CPUs, and how many processes it holds. */
async function hostQuota(id: string): Promise<{ cpus: number; processes: number }> {
  const v2 = `/sys/fs/cgroup/matchlock/${id}`;
  const dir = existsSync("/sys/fs/cgroup/cgroup.controllers") ? v2 : `/sys/fs/cgroup/cpu/matchlock/${id}`;
  const processes = (await readFile(`${dir}/cgroup.procs`, "utf8")).split("\n").filter(Boolean).length;
  if (dir === v2) {
    const [quota, period] = (await readFile(`${dir}/cpu.max`, "utf8")).trim().split(" ").map(Number);
    return { cpus: quota! / period!, processes };
  }
  const quota = Number(await readFile(`${dir}/cpu.cfs_quota_us`, "utf8"));
  const period = Number(await readFile(`${dir}/cpu.cfs_period_us`, "utf8"));
  return { cpus: quota / period, processes };
}

describe(`the guest's CPU count follows cpus on ${BACKEND}`, () => {
  before(async () => {
    await setUpE2E();
  });

  for (const cpus of [0.5, 1.5, 3]) {
    test(`cpus ${cpus}`, async () => {
      await using client = newClient();
      const id = await client.launch(new Sandbox(BUSYBOX).withCPUs(cpus));
      const seen = Number((await client.exec("nproc")).stdout.trim());
      const expected = BACKEND === "gvisor" ? Math.min(availableParallelism(), Math.ceil(cpus)) : Math.ceil(cpus);
      assert.equal(seen, expected, `nproc with cpus ${cpus} (host: ${availableParallelism()})`);
      if (!Number.isInteger(cpus) || BACKEND === "gvisor") {
        const quota = await hostQuota(id);
        assert.equal(quota.cpus, cpus, "the host cgroup's CPU quota");
        assert.ok(quota.processes > 0, "the sandbox's processes are in it");
      }
    });
  }
});
