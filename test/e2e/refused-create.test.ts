// End to end: a create refused late, after its state directory was made (a mount refused once
// the record exists, an isolation engine that fails to boot with the network already sealed),
// leaves nothing behind: no directory under the home's vms/, no process, no netns, tap or nft
// table. The client never learns the id of a refused create, so nothing may wait for it to remove.
import assert from "node:assert/strict";
import { watch } from "node:fs";
import { mkdir, mkdtemp, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { BACKEND, BUSYBOX, cli, eventually, leftovers, networkLeftovers, setUpE2E } from "../helpers/e2e.js";
import { RawSession } from "../helpers/raw-rpc.js";

/**
 * A sandbox that cannot boot: on the micro-VM, `false` in place of QEMU; on gVisor, a real runsc
 * whose container init (the agent) is `false`, so the sandbox exits before its agent is ready.
 */
const FAILING_ENGINE: Record<string, string> = BACKEND === "microvm" ? { MATCHLOCK_QEMU: "/bin/false" } : { MATCHLOCK_AGENT: "/bin/false" };

describe(`a create refused late leaves nothing behind on ${BACKEND}`, () => {
  let home: string;
  let missing: string;

  before(async () => {
    home = await setUpE2E();
    await mkdir(join(home, "vms"), { recursive: true });
    missing = join(await mkdtemp(join(tmpdir(), "matchlock-refused-")), "missing");
  });

  /** Runs `fn` while recording every sandbox directory that appears under vms/. */
  async function watchingVms<T>(fn: () => Promise<T>): Promise<{ result: T; ids: string[] }> {
    const ids = new Set<string>();
    const w = watch(join(home, "vms"), (_event, name) => {
      if (name && /^vm-[0-9a-f]{8}$/.test(String(name))) ids.add(String(name));
    });
    try {
      return { result: await fn(), ids: [...ids] };
    } finally {
      w.close();
    }
  }

  async function assertNothingLeft(ids: string[]): Promise<void> {
    assert.deepEqual(await readdir(join(home, "vms")), [], "a state directory is left under vms/");
    for (const id of ids) {
      assert.deepEqual(await eventually(() => leftovers(id, home)), [], id);
      assert.deepEqual(await eventually(() => networkLeftovers(id)), [], `${id}: network pieces left`);
    }
  }

  async function refusedCreate(params: object, env: Record<string, string> = {}) {
    return watchingVms(async () => {
      const s = new RawSession(env);
      try {
        return await s.call("create", params, 1);
      } finally {
        s.proc.stdin.end();
        await s.exited;
      }
    });
  }

  test("RPC: an overlay of a missing host directory, refused after the record was written", async () => {
    const { result, ids } = await refusedCreate({ image: BUSYBOX, vfs: { mounts: { "/workspace/data": { type: "overlay", host_path: missing } } } });
    assert.equal(result.error?.code, -32602, JSON.stringify(result));
    assert.match(result.error.message, /host path does not exist/);
    assert.equal(ids.length, 1, "the create got as far as its state directory");
    await assertNothingLeft(ids);
  });

  test("RPC: the isolation engine fails to boot a sandbox whose network was already sealed", async () => {
    const { result, ids } = await refusedCreate({ image: BUSYBOX, network: { allowed_hosts: ["example.test"] } }, FAILING_ENGINE);
    assert.equal(result.error?.code, -32000, JSON.stringify(result));
    assert.match(result.error.message, /failed to (create sandbox|start)/);
    assert.equal(ids.length, 1, "the create got as far as its state directory");
    await assertNothingLeft(ids);
  });

  test("matchlock run: a volume refused after the record was written", async () => {
    const volume = await watchingVms(() => cli(["run", "--image", BUSYBOX, "-v", `${missing}:/data`, "--", "true"]));
    assert.notEqual(volume.result.code, 0, `exit 0: ${volume.result.stdout}${volume.result.stderr}`);
    assert.match(volume.result.stderr, /host path does not exist/);
    assert.equal(volume.ids.length, 1, "the create got as far as its state directory");
    await assertNothingLeft(volume.ids);
  });
});
