import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { allowedCpus, cpuSetFor, parseCpuList } from "../../src/engine/backends/cpu-set.js";
import { cpuQuotaFor } from "../../src/engine/backends/microvm/cpu-quota.js";

describe("gVisor's cpuset (the guest sees as many CPUs as it holds)", () => {
  test("CPU lists as the kernel writes them", () => {
    assert.deepEqual(parseCpuList("0-3,6\n"), [0, 1, 2, 3, 6]);
    assert.deepEqual(parseCpuList("5"), [5]);
    assert.throws(() => parseCpuList("a-b"), /not a CPU list/);
    assert.deepEqual(allowedCpus("Name:\tnode\nCpus_allowed_list:\t0-1,4\n"), [0, 1, 4]);
    assert.ok(allowedCpus().length >= 1, "this process's own affinity");
  });

  test("count CPUs of the allowed ones, at most all of them, placed by the seed", () => {
    const allowed = [0, 1, 2, 3];
    assert.equal(cpuSetFor("vm-00000001", 1, allowed).split(",").length, 1);
    assert.equal(cpuSetFor("vm-00000001", 2, allowed).split(",").length, 2);
    assert.equal(cpuSetFor("vm-00000001", 9, allowed), "0,1,2,3");
    assert.equal(cpuSetFor("vm-00000001", 1, allowed), cpuSetFor("vm-00000001", 1, allowed), "the same sandbox, the same place");
    const used = new Set(Array.from({ length: 64 }, (_, i) => cpuSetFor(`vm-${i}`, 1, allowed)));
    assert.equal(used.size, 4, "sandboxes spread over every CPU");
    for (const set of used) assert.ok(allowed.includes(Number(set)));
  });
});

test("the micro-VM needs a quota cgroup for fractional cpus only (whole vCPUs are their own limit)", async () => {
  assert.equal(await cpuQuotaFor("vm-00000000", 1), undefined);
  assert.equal(await cpuQuotaFor("vm-00000000", 4), undefined);
});
