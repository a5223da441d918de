// End to end: a `cancel` that reaches the engine in the same read as the request it cancels
// (both lines in one write) still finds that request. The engine handles every line of a read
// at once, so this is the case where a cancel could overtake its create or exec.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { BUSYBOX, eventually, leftovers, setUpE2E } from "../helpers/e2e.js";
import { RawSession } from "../helpers/raw-rpc.js";

describe("a cancel in the same read as its request", () => {
  let home: string;
  let s: RawSession;

  before(async () => {
    home = await setUpE2E();
    s = new RawSession();
  });
  after(() => {
    s.proc.kill("SIGKILL");
  });

  /** Both lines in one write; the replies, by id. */
  async function sendTogether(request: object, cancelId: number): Promise<Map<number, any>> {
    const line = (m: object) => JSON.stringify({ jsonrpc: "2.0", ...m });
    s.sendLine(`${line(request)}\n${line({ method: "cancel", params: { id: (request as { id: number }).id }, id: cancelId })}`);
    const replies = [await s.next(), await s.next()];
    return new Map(replies.map((m) => [m.id, m]));
  }

  test("a create and its cancel: the create is undone before anything is made", async () => {
    const byId = await sendTogether({ method: "create", params: { image: BUSYBOX }, id: 1 }, 2);
    assert.deepEqual(byId.get(2).result, { cancelled: true });
    assert.equal(byId.get(1).error.code, -32003, JSON.stringify(byId.get(1)));
  });

  test("an exec queued behind a create and its cancel: the command never runs, the create does", async () => {
    const own = new RawSession();
    try {
      const line = (m: object) => JSON.stringify({ jsonrpc: "2.0", ...m });
      own.sendLine([
        line({ method: "create", params: { image: BUSYBOX }, id: 6 }),
        line({ method: "exec", params: { command: "touch /tmp/ran" }, id: 7 }),
        line({ method: "cancel", params: { id: 7 }, id: 8 }),
      ].join("\n"));
      const byId = new Map<number, any>();
      for (let i = 0; i < 3; i++) {
        const m = await own.next();
        byId.set(m.id, m);
      }
      assert.deepEqual(byId.get(8).result, { cancelled: true });
      assert.ok(byId.get(6).result?.id, JSON.stringify(byId.get(6)));
      assert.equal(byId.get(7).error.code, -32003, JSON.stringify(byId.get(7)));
      const check = await own.call("exec", { command: "test -e /tmp/ran" }, 9);
      assert.equal(check.result?.exit_code, 1, JSON.stringify(check));
      own.proc.stdin.end();
      assert.equal(await own.exited, 0);
      assert.deepEqual(await eventually(() => leftovers(byId.get(6).result.id, home)), []);
    } finally {
      own.proc.kill("SIGKILL");
    }
  });

  test("an exec and its cancel: the command is stopped", async () => {
    const created = await s.call("create", { image: BUSYBOX }, 3);
    assert.ok(created.result?.id, JSON.stringify(created));
    const started = Date.now();
    const byId = await sendTogether({ method: "exec", params: { command: "sleep 60" }, id: 4 }, 5);
    assert.deepEqual(byId.get(5).result, { cancelled: true });
    assert.equal(byId.get(4).error.code, -32003, JSON.stringify(byId.get(4)));
    assert.ok(Date.now() - started < 30_000, "the exec was stopped, not run to its end");
    s.proc.stdin.end();
    assert.equal(await s.exited, 0);
    assert.deepEqual(await eventually(() => leftovers(created.result.id, home)), []);
  });
});
