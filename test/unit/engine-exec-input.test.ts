// The engine's side of a command's stdin: credit from the agent, order, bounds.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ExecInput, MAX_QUEUED_STDIN } from "../../src/engine/agent/exec-input.js";
import { FrameType, STDIN_CHUNK, STDIN_WINDOW } from "../../src/protocol/agent-frames.js";

function ack(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** An ExecInput attached to a recorder of the frames it sends. */
function attached(tty?: { rows: number; cols: number }) {
  const frames: Array<{ type: number; payload: Buffer }> = [];
  const input = new ExecInput(tty);
  input.attach((type, payload) => {
    frames.push({ type, payload: Buffer.from(payload) });
    return undefined;
  });
  return { input, frames, sent: () => frames.filter((f) => f.type === FrameType.STDIN).reduce((n, f) => n + f.payload.length, 0) };
}

describe("engine: ExecInput", () => {
  it("sends stdin only against the agent's credit, in chunks, and more as it acknowledges", () => {
    const { input, frames, sent } = attached();
    const data = Buffer.alloc(STDIN_WINDOW + 100_000, 7);
    assert.equal(input.write(data), undefined, "under the queue bound: no waiting");
    assert.equal(sent(), STDIN_WINDOW);
    assert.ok(frames.every((f) => f.payload.length <= STDIN_CHUNK));
    input.onFrame(FrameType.STDIN_ACK, ack(50_000));
    assert.equal(sent(), STDIN_WINDOW + 50_000);
    input.onFrame(FrameType.STDIN_ACK, ack(STDIN_WINDOW));
    assert.equal(sent(), data.length);
    assert.ok(Buffer.concat(frames.map((f) => f.payload)).equals(data));
  });

  it("keeps data, EOF and resizes in order", () => {
    const { input, frames } = attached({ rows: 24, cols: 80 });
    input.write(Buffer.alloc(STDIN_WINDOW, 1)); // uses the whole window
    input.write(Buffer.from("after"));
    input.resize({ rows: 50, cols: 132 });
    input.end();
    input.write(Buffer.from("too late")); // after EOF: dropped
    assert.deepEqual(frames.map((f) => f.type).slice(-1), [FrameType.STDIN]);
    input.onFrame(FrameType.STDIN_ACK, ack(STDIN_WINDOW));
    const tail = frames.slice(-3);
    assert.deepEqual(tail.map((f) => f.type), [FrameType.STDIN, FrameType.RESIZE, FrameType.STDIN_EOF]);
    assert.equal(tail[0]!.payload.toString(), "after");
    assert.deepEqual([...tail[1]!.payload], [0, 50, 0, 132]);
  });

  it("a writer past the queue bound waits until the command took enough, or the exec ends", async () => {
    const { input } = attached();
    assert.equal(input.write(Buffer.alloc(STDIN_WINDOW + MAX_QUEUED_STDIN)), undefined);
    const wait = input.write(Buffer.alloc(10));
    assert.ok(wait instanceof Promise);
    let released = false;
    void wait.then(() => (released = true));
    await Promise.resolve();
    assert.equal(released, false);
    input.onFrame(FrameType.STDIN_ACK, ack(STDIN_WINDOW));
    await wait;
    const again = input.write(Buffer.alloc(MAX_QUEUED_STDIN));
    assert.ok(again instanceof Promise);
    input.close();
    await again; // the exec is over: nobody waits for it any more
  });

  it("queues input that arrives before the command runs; a cancel drops it and sends EOF", () => {
    const input = new ExecInput();
    input.write(Buffer.from("early"));
    const frames: number[] = [];
    input.abort();
    input.attach((type) => {
      frames.push(type);
      return undefined;
    });
    assert.deepEqual(frames, [FrameType.STDIN_EOF]);
  });

  it("an agent acknowledging more than it got breaks the protocol; STARTED reports the pid", () => {
    const { input } = attached();
    input.write(Buffer.from("abc"));
    assert.throws(() => input.onFrame(FrameType.STDIN_ACK, ack(4)), /more than were sent/);
    assert.throws(() => input.onFrame(FrameType.STDIN_ACK, Buffer.alloc(3)), /4 bytes/);
    let pid = 0;
    input.onStarted = (p) => (pid = p);
    input.onFrame(FrameType.STARTED, ack(1234));
    assert.equal(pid, 1234);
  });
});
