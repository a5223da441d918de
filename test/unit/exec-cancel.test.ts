// Cancelling an exec through the agent channel with a CancelSwitch (the engine's per-exec
// cancel, cheaper than an AbortController on the round-trip hot path): what reaches the agent.
import assert from "node:assert/strict";
import { describe, mock, test } from "node:test";
import { SandboxLostError } from "../../src/engine/agent/connection.js";
import { CancelSwitch } from "../../src/engine/agent/cancel-switch.js";
import { FrameType } from "../../src/protocol/agent-frames.js";
import { fakeAgentChannel, settle } from "../helpers/fake-agent-channel.js";

const sink = { stdout() {}, stderr() {} };
const request = { command: "sleep 60", cwd: "/", user: "", env: ["PATH=/bin"] };

/** An exec started on a fake agent channel with a switch of its own, run under mock timers. */
async function withRunningExec(body: (exec: ReturnType<typeof fakeAgentChannel> & { cancel: CancelSwitch; running: Promise<unknown> }) => Promise<void>): Promise<void> {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const channel = fakeAgentChannel();
    await channel.conn.ready;
    const cancel = new CancelSwitch();
    const running = channel.conn.exec(request, sink, cancel);
    await settle();
    await body({ ...channel, cancel, running });
  } finally {
    mock.timers.reset();
  }
}

describe("exec cancel", () => {
  test("a switch flipped mid-exec sends SIGTERM, then SIGKILL 5 s later if the exec still runs", () =>
    withRunningExec(async ({ exit, signals, sent, cancel, running }) => {
      const id = sent[0]!.id;
      assert.equal(sent[0]!.type, FrameType.EXEC);
      cancel.abort();
      await settle();
      assert.deepEqual(signals(), [[id, 15]]);
      mock.timers.tick(4999);
      await settle();
      assert.deepEqual(signals(), [[id, 15]]);
      mock.timers.tick(1);
      await settle();
      assert.deepEqual(signals(), [[id, 15], [id, 9]]);
      exit(id, -1, 9);
      assert.deepEqual(await running, { code: -1, signal: 9, outOfMemory: false });
    }));

  test("an exec that ends after SIGTERM gets no SIGKILL, and a later flip sends nothing", () =>
    withRunningExec(async ({ conn, exit, signals, sent, cancel, running }) => {
      cancel.abort();
      exit(sent[0]!.id, -1, 15);
      await running;
      mock.timers.tick(10_000);
      cancel.abort();
      const other = new CancelSwitch();
      const done = conn.exec(request, sink, other);
      await settle();
      exit(sent.at(-1)!.id, 0);
      await done;
      other.abort();
      await settle();
      assert.deepEqual(signals(), [[sent[0]!.id, 15]]);
    }));

  test("a switch flipped before the exec starts signals it right after its EXEC frame", async () => {
    const { conn, sent } = fakeAgentChannel();
    await conn.ready;
    const cancel = new CancelSwitch();
    cancel.abort();
    const running = conn.exec(request, sink, cancel);
    await settle();
    assert.deepEqual(sent.map((f) => f.type), [FrameType.EXEC, FrameType.SIGNAL]);
    assert.equal(sent[1]!.id, sent[0]!.id);
    conn.lose(new SandboxLostError("test over"));
    await assert.rejects(running, SandboxLostError);
  });

  test("a lost channel fails the exec; flipping the switch afterwards writes nothing", async () => {
    const { conn, fromAgent, sent } = fakeAgentChannel();
    await conn.ready;
    const cancel = new CancelSwitch();
    const running = conn.exec(request, sink, cancel);
    fromAgent.end();
    await assert.rejects(running, SandboxLostError);
    const before = sent.length;
    cancel.abort();
    await settle();
    assert.equal(sent.length, before);
  });
});
