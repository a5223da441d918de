// End to end: the guest's CPU count follows `cpus`, not the host's: the micro-VM gets that many
// vCPUs; gVisor sizes its CPUs from the cgroup quota (runsc's --cpu-num-from-quota: at least 2,
// and never more than the host has).
import assert from "node:assert/strict";
import { availableParallelism } from "node:os";
import { before, describe, test } from "node:test";
import { Sandbox } from "../../src/sdk/index.js";
import { BACKEND, BUSYBOX, newClient, setUpE2E } from "../helpers/e2e.js";

describe(`the guest's CPU count follows cpus on ${BACKEND}`, () => {
  before(async () => {
    await setUpE2E();
  });

  for (const cpus of [1, 3]) {
    test(`cpus ${cpus}`, async () => {
      await using client = newClient();
      await client.launch(new Sandbox(BUSYBOX).withCPUs(cpus));
      const seen = Number((await client.exec("nproc")).stdout.trim());
      const expected = BACKEND === "gvisor" ? Math.min(availableParallelism(), Math.max(2, cpus)) : cpus;
      assert.equal(seen, expected, `nproc with cpus ${cpus} (host: ${availableParallelism()})`);
    });
  }
});
