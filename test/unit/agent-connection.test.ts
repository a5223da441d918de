// The engine side of the agent channel against a hostile guest: garbage, oversized and
// out-of-place frames must fail the sandbox's operations with a clear error, never crash or hang.
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { describe, test } from "node:test";
import { AgentConnection, SandboxLostError } from "../../src/engine/agent/connection.js";
import { AgentProtocolError, FrameType, MAX_PAYLOAD, encodeFrame } from "../../src/protocol/agent-frames.js";

function connect() {
  const toAgent = new PassThrough();
  const fromAgent = new PassThrough();
  const conn = new AgentConnection(toAgent, fromAgent);
  fromAgent.write(encodeFrame(FrameType.READY, 0, Buffer.from("test-agent")));
  return { conn, fromAgent, toAgent };
}

const sink = { stdout() {}, stderr() {} };

describe("AgentConnection with a hostile guest", () => {
  test("garbage bytes fail every pending operation and later ones", async () => {
    const { conn, fromAgent } = connect();
    assert.equal(await conn.ready, "test-agent");
    const pending = conn.exec({ command: "x", cwd: "/", user: "", env: [] }, sink);
    fromAgent.write(Buffer.from("this is not a frame at all"));
    await assert.rejects(pending, AgentProtocolError);
    await assert.rejects(conn.ping(), AgentProtocolError);
    assert.ok(conn.lost);
  });

  test("an oversized frame header is refused before anything is buffered", async () => {
    const { conn, fromAgent } = connect();
    const pending = conn.ping();
    const header = Buffer.alloc(9);
    header.writeUInt8(FrameType.STDOUT, 0);
    header.writeUInt32BE(1, 1);
    header.writeUInt32BE(MAX_PAYLOAD + 1, 5);
    fromAgent.write(header);
    await assert.rejects(pending, /exceeds/);
  });

  test("a malformed EXIT and an out-of-place frame type end the channel", async () => {
    for (const bad of [encodeFrame(FrameType.EXIT, 1, Buffer.from([1, 2, 3])), encodeFrame(FrameType.ENTRIES, 1, Buffer.from("a\0b\0"))]) {
      const { conn, fromAgent } = connect();
      const pending = conn.exec({ command: "x", cwd: "/", user: "", env: [] }, sink);
      fromAgent.write(bad);
      await assert.rejects(pending, AgentProtocolError);
    }
  });

  test("frames for unknown operations are ignored; the channel closing fails what is pending", async () => {
    const { conn, fromAgent } = connect();
    const pending = conn.ping();
    fromAgent.write(encodeFrame(FrameType.OK, 999));
    fromAgent.write(encodeFrame(FrameType.OK, 1));
    await pending;
    const next = conn.ping();
    fromAgent.end();
    await assert.rejects(next, SandboxLostError);
  });
});

describe("AgentConnection: explaining a lost sandbox", () => {
  function connectExplained() {
    const toAgent = new PassThrough();
    const fromAgent = new PassThrough();
    let asked = 0;
    const conn = new AgentConnection(toAgent, fromAgent, async () => {
      asked++;
      return new SandboxLostError("explained: out of memory");
    });
    fromAgent.write(encodeFrame(FrameType.READY, 0, Buffer.from("test-agent")));
    return { conn, fromAgent, asked: () => asked };
  }

  test("a channel that closes unasked is explained by the backend (e.g. an OOM kill)", async () => {
    const { conn, fromAgent, asked } = connectExplained();
    await conn.ready;
    const pending = conn.ping();
    fromAgent.end();
    await assert.rejects(pending, /explained: out of memory/);
    assert.equal(asked(), 1);
  });

  test("a channel that closes after shutdown() is a normal stop: the backend is not asked", async () => {
    const { conn, fromAgent, asked } = connectExplained();
    await conn.ready;
    conn.shutdown();
    fromAgent.end();
    await new Promise((r) => setImmediate(r));
    assert.match(String(conn.lost?.message), /closed its agent channel/);
    await conn.loseExplained(new SandboxLostError("the sandbox exited")); // as runsc's exit reports it
    assert.equal(asked(), 0);
  });

  test("after the sandbox was already lost (a deadline, say), a later close is not explained either", async () => {
    const { conn, fromAgent, asked } = connectExplained();
    await conn.ready;
    conn.lose(new SandboxLostError("the sandbox reached its timeout"));
    fromAgent.end();
    await conn.loseExplained(new SandboxLostError("the sandbox exited"));
    assert.equal(asked(), 0);
    assert.match(String(conn.lost?.message), /timeout/);
  });
});

describe("AgentConnection: frames on the way out", () => {
  test("big payloads go out behind their own header: the same bytes as whole frames, in order", async () => {
    const { conn, toAgent } = connect();
    await conn.ready;
    const small = Buffer.alloc(100, 1);
    const big = Buffer.alloc(256 * 1024, 2);
    const sent: Buffer[] = [];
    toAgent.on("data", (chunk: Buffer) => sent.push(chunk));
    await conn.sendFrame(FrameType.WRITE_DATA, 7, small);
    await conn.sendFrame(FrameType.WRITE_DATA, 7, big);
    await conn.sendFrame(FrameType.WRITE_DATA, 8, Buffer.alloc(0));
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(Buffer.concat(sent).equals(Buffer.concat([
      encodeFrame(FrameType.WRITE_DATA, 7, small), encodeFrame(FrameType.WRITE_DATA, 7, big), encodeFrame(FrameType.WRITE_DATA, 8),
    ])));
  });
});
