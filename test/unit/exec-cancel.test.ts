// Cancelling an exec through the agent channel with a CancelSwitch (the engine's per-exec
// cancel, which replaced an AbortController on the round-trip hot path): what reaches the agent.
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { describe, mock, test } from "node:test";
import { AgentConnection, SandboxLostError } from "../../src/engine/agent/connection.js";
import { CancelSwitch } from "../../src/engine/agent/cancel-switch.js";
import { FrameType, encodeFrame } from "../../src/protocol/agent-frames.js";

const sink = { stdout() {}, stderr() {} };
const request = { command: "sleep 60", cwd: "/", user: "", env: ["PATH=/bin"] };

function connect() {
  const toAgent = new PassThrough();
  const fromAgent = new PassThrough();
  const conn = new AgentConnection(toAgent, fromAgent);
  // What the engine sends (FrameDecoder reads only the agent's frame types): type, id, length, payload.
  const sent: Array<{ type: number; id: number; payload: Buffer }> = [];
  let bytes = Buffer.alloc(0);
  toAgent.on("data", (chunk: Buffer) => {
    bytes = Buffer.concat([bytes, chunk]);
    while (bytes.length >= 9 && bytes.length >= 9 + bytes.readUInt32BE(5)) {
      const end = 9 + bytes.readUInt32BE(5);
      sent.push({ type: bytes[0]!, id: bytes.readUInt32BE(1), payload: bytes.subarray(9, end) });
      bytes = bytes.subarray(end);
    }
  });
  fromAgent.write(encodeFrame(FrameType.READY, 0, Buffer.from("test-agent")));
  const exit = (id: number, code: number, signal = 0) => {
    const payload = Buffer.alloc(8);
    payload.writeInt32BE(code, 0);
    payload.writeInt32BE(signal, 4);
    fromAgent.write(encodeFrame(FrameType.EXIT, id, payload));
  };
  const signals = () => sent.filter((f) => f.type === FrameType.SIGNAL).map((f) => [f.id, f.payload[0]]);
  return { conn, fromAgent, sent, exit, signals };
}

const settle = () => new Promise((r) => setImmediate(r));

describe("exec cancel", () => {
  test("a switch flipped mid-exec sends SIGTERM, then SIGKILL 5 s later if the exec still runs", async () => {
    mock.timers.enable({ apis: ["setTimeout"] });
    try {
      const { conn, exit, signals, sent } = connect();
      await conn.ready;
      const cancel = new CancelSwitch();
      const running = conn.exec(request, sink, cancel);
      await settle();
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
    } finally {
      mock.timers.reset();
    }
  });

  test("an exec that ends after SIGTERM gets no SIGKILL, and a later flip sends nothing", async () => {
    mock.timers.enable({ apis: ["setTimeout"] });
    try {
      const { conn, exit, signals, sent } = connect();
      await conn.ready;
      const cancel = new CancelSwitch();
      const running = conn.exec(request, sink, cancel);
      await settle();
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
    } finally {
      mock.timers.reset();
    }
  });

  test("a switch flipped before the exec starts signals it right after its EXEC frame", async () => {
    const { conn, sent } = connect();
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
    const { conn, fromAgent, sent } = connect();
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
