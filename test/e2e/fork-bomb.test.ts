// End to end: a fork bomb inside a sandbox stops at the guest's task limit, inside the guest;
// the sandbox survives it and runs the next command; and the host tasks it costs stay bounded
// (gVisor: runsc's threads, capped by the sandbox's pids cgroup; micro-VM: QEMU's threads,
// which guest processes never add to). The bomb stops itself: every shell sleeps, then waits.
import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { Sandbox, type Client } from "../../src/sdk/index.js";
import { HOST_TASK_LIMIT } from "../../src/engine/backends/gvisor/bundle.js";
import { GUEST_TASK_LIMIT } from "../../src/engine/backends/task-limit.js";
import { BACKEND, BUSYBOX, newClient, processesOf, setUpE2E } from "../helpers/e2e.js";

/** 2^10 - 1 shells (and as many sleeps) if nothing stopped it: four times the limit. */
const DEPTH = 9;
const HOLD_SECONDS = 15;
/** QEMU's own threads (vCPUs, I/O workers) come nowhere near this, whatever the guest does. */
const MICROVM_HOST_TASKS = 256;

/**
 * Host tasks (threads) the sandbox takes: on gVisor its pids cgroup's count (runsc, the Sentry
 * and its ptrace stubs, which a process listing would not tie to the sandbox); on the micro-VM
 * the threads of its QEMU.
 */
async function hostTasksOf(vmId: string): Promise<number> {
  if (BACKEND !== "microvm") return Number((await readFile(`/sys/fs/cgroup/pids/matchlock/${vmId}/pids.current`, "utf8").catch(() => "0")).trim());
  let n = 0;
  for (const line of await processesOf(vmId)) {
    const pid = line.trim().split(/\s+/)[0];
    n += (await readdir(`/proc/${pid}/task`).catch(() => [] as string[])).length;
  }
  return n;
}

/**
 * Tasks the guest's commands run, read by the agent without starting a process: gVisor's /proc
 * lists only the guest's own; the micro-VM's also has kernel threads, so there the commands'
 * cgroup counts.
 */
async function guestTasksOf(client: Client): Promise<number> {
  if (BACKEND === "microvm") return Number((await client.readFile("/sys/fs/cgroup/matchlock/pids.current")).toString().trim());
  return (await client.listFiles("/proc")).filter((e) => /^\d+$/.test(e.name)).length;
}

describe(`a fork bomb is bounded, on ${BACKEND}`, () => {
  let client: Client;
  let vmId: string;

  before(async () => {
    await setUpE2E();
    client = newClient();
    vmId = await client.launch(new Sandbox(BUSYBOX));
  });
  after(async () => {
    await client?.close();
    await client?.remove();
  });

  test("the bomb stops at the guest's task limit, the host's tasks stay bounded, and the sandbox runs the next command", async (t) => {
    const bomb = client.exec(
      `b() { if [ "$1" -gt 0 ]; then b $(($1-1)) & b $(($1-1)) & fi; sleep ${HOLD_SECONDS}; wait; }; b ${DEPTH}; echo bomb-over`,
    );
    let done = false;
    void bomb.finally(() => (done = true));
    let guestPeak = 0;
    let hostPeak = 0;
    // Sampled while the bomb runs.
    while (!done) {
      guestPeak = Math.max(guestPeak, await guestTasksOf(client));
      hostPeak = Math.max(hostPeak, await hostTasksOf(vmId));
      await new Promise((r) => setTimeout(r, 200));
    }
    const r = await bomb;
    t.diagnostic(`guest processes at once: ${guestPeak}; host tasks of the sandbox: ${hostPeak}`);
    assert.match(r.stderr, /can't fork|Resource temporarily unavailable/, "the bomb met the limit");
    assert.ok(guestPeak <= GUEST_TASK_LIMIT + 8, `the guest ran ${guestPeak} processes at once (limit ${GUEST_TASK_LIMIT})`);
    const hostBound = BACKEND === "microvm" ? MICROVM_HOST_TASKS : HOST_TASK_LIMIT;
    assert.ok(hostPeak <= hostBound, `the sandbox took ${hostPeak} host tasks (bound ${hostBound})`);
    const later = await client.exec("echo still-here");
    assert.equal(later.stdout, "still-here\n", later.stderr);
  });
});
