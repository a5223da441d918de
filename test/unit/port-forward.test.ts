// Port forwarding below the engine: the frame payloads and specs, the engine's half of the flow
// control against a scripted agent (fake channel), and the real agent binary's half against a
// server on the host's loopback.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { FrameType, encodeFrame, type Frame } from "../../src/protocol/agent-frames.js";
import { decodeCredit, encodeCredit, encodePortClose, encodePortConnect } from "../../src/protocol/port-frames.js";
import { describeBinding, parsePortSpec } from "../../src/protocol/port-forward.js";
import { ENGINE_WINDOW } from "../../src/engine/ports/port-bridge.js";
import { PortForwards } from "../../src/engine/ports/port-forwards.js";
import { serve } from "../../src/engine/rpc/server.js";
import { PassThrough } from "node:stream";
import { AgentDriver } from "../helpers/agent-driver.js";
import { fakeAgentChannel } from "../helpers/fake-agent-channel.js";

after(() => AgentDriver.killAll());
const LIMIT = { timeout: 60_000 };
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** Polls until `check` holds (bounded far above what a loaded machine needs). */
async function until(check: () => boolean, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe("port-forward specs and payloads", () => {
  test("[LOCAL:]REMOTE specs as upstream parses them", () => {
    assert.deepEqual(parsePortSpec("8080"), { localPort: 8080, remotePort: 8080 });
    assert.deepEqual(parsePortSpec(" 18080:80 "), { localPort: 18080, remotePort: 80 });
    for (const bad of ["", "0", "1:2:3", "70000", "a:80", "80:", "-1", "8.5"]) {
      assert.throws(() => parsePortSpec(bad), /invalid port forward/, bad);
    }
    assert.equal(describeBinding({ address: "127.0.0.1", local_port: 8080, remote_port: 80 }), "Forwarding 127.0.0.1:8080 -> sandbox:80");
    assert.equal(describeBinding({ address: "::1", local_port: 8080, remote_port: 80 }), "Forwarding [::1]:8080 -> sandbox:80");
  });

  test("frame payloads", () => {
    assert.deepEqual([...encodePortConnect(8080, 0x01020304)], [0x1f, 0x90, 1, 2, 3, 4]);
    assert.throws(() => encodePortConnect(0, 1), RangeError);
    assert.throws(() => encodePortConnect(65536, 1), RangeError);
    assert.equal(decodeCredit(encodeCredit(123456)), 123456);
    assert.throws(() => decodeCredit(Buffer.alloc(3)), /4 bytes/);
    assert.deepEqual([...encodePortClose(true)], [1]);
    assert.deepEqual([...encodePortClose(false)], [0]);
  });
});

describe("port_forward params (in-process serve, no sandbox)", () => {
  test("empty forwards, bad ports and addresses are -32602; no sandbox or an unknown vm_id is -32000", async () => {
    const input = new PassThrough();
    const output = new PassThrough();
    let text = "";
    output.on("data", (d: Buffer) => (text += d.toString()));
    const served = serve({ input, output, log: () => {}, handleSignals: false });
    const requests: unknown[] = [
      {},
      { forwards: [] },
      { forwards: [{ local_port: 8080, remote_port: 0 }] },
      { forwards: [{ local_port: 8080, remote_port: 80 }], addresses: ["localhost"] },
      { forwards: [{ local_port: 8080, remote_port: 80, proto: "udp" }] },
      { forwards: [{ local_port: 8080, remote_port: 80 }] },
      { forwards: [{ local_port: 8080, remote_port: 80 }], vm_id: "vm-00000000" },
    ];
    input.end(requests.map((params, id) => JSON.stringify({ jsonrpc: "2.0", method: "port_forward", params, id }) + "\n").join(""));
    await served;
    const errors = text.split("\n").filter(Boolean).map((l) => (JSON.parse(l) as { error: { code: number; message: string } }).error);
    assert.deepEqual(errors.map((e) => e.code), [-32602, -32602, -32602, -32602, -32602, -32000, -32000]);
    assert.equal(errors[0]!.message, "forwards is required");
    assert.equal(errors[1]!.message, "forwards is required");
    assert.match(errors[2]!.message, /remote_port must be 1-65535/);
    assert.match(errors[3]!.message, /invalid address "localhost"/);
    assert.match(errors[4]!.message, /unknown field forwards\.0\.proto/);
    assert.equal(errors[5]!.message, "VM not created");
    assert.match(errors[6]!.message, /VM vm-00000000 is not running in this engine/);
  });
});

/** A forward over a scripted agent: the test plays the agent, frame by frame. */
async function scriptedForward() {
  const fake = fakeAgentChannel();
  const forwards = new PortForwards(fake.conn);
  const [binding] = await forwards.replace([{ localPort: 0, remotePort: 8080 }], ["127.0.0.1"]);
  const client = connect({ host: "127.0.0.1", port: binding!.local_port });
  client.on("error", () => undefined);
  await once(client, "connect");
  await until(() => fake.sent.some((f) => f.type === FrameType.PORT_CONNECT), "PORT_CONNECT");
  const open = fake.sent.find((f) => f.type === FrameType.PORT_CONNECT)!;
  const reply = (type: number, payload: Buffer = Buffer.alloc(0)) => fake.fromAgent.write(encodeFrame(type as never, open.id, payload));
  const sentOf = (type: number) => fake.sent.filter((f) => f.id === open.id && f.type === type);
  const bytesOf = (type: number) => sentOf(type).reduce((n, f) => n + (type === FrameType.PORT_DATA ? f.payload.length : f.payload.readUInt32BE(0)), 0);
  return { fake, forwards, client, open, reply, sentOf, bytesOf };
}

describe("the engine's half (scripted agent)", () => {
  test("PORT_CONNECT names the guest port and the engine's window; nothing is sent beyond the agent's window", LIMIT, async () => {
    const s = await scriptedForward();
    try {
      assert.equal(s.open.payload.readUInt16BE(0), 8080);
      assert.equal(s.open.payload.readUInt32BE(2), ENGINE_WINDOW);
      s.client.write(randomBytes(100_000));
      s.reply(FrameType.PORT_CONNECTED, encodeCredit(1000));
      await until(() => s.bytesOf(FrameType.PORT_DATA) === 1000, "the first 1000 bytes");
      await sleep(200);
      assert.equal(s.bytesOf(FrameType.PORT_DATA), 1000, "nothing beyond the window before credit");
      s.reply(FrameType.PORT_CREDIT_OUT, encodeCredit(99_000));
      await until(() => s.bytesOf(FrameType.PORT_DATA) === 100_000, "the rest after credit");
      s.client.end();
      await until(() => s.sentOf(FrameType.PORT_SHUTDOWN).length === 1, "PORT_SHUTDOWN after the host's end");
    } finally {
      s.client.destroy();
      await s.forwards.close();
    }
  });

  test("guest bytes reach the host and are credited back once the socket took them", LIMIT, async () => {
    const s = await scriptedForward();
    try {
      s.reply(FrameType.PORT_CONNECTED, encodeCredit(ENGINE_WINDOW));
      const data = randomBytes(600 * 1024);
      const got: Buffer[] = [];
      s.client.on("data", (d: Buffer) => got.push(d));
      for (let off = 0; off < data.length; off += 200 * 1024) s.reply(FrameType.PORT_DATA_OUT, data.subarray(off, off + 200 * 1024));
      s.reply(FrameType.PORT_EOF);
      await once(s.client, "end");
      assert.equal(sha(Buffer.concat(got)), sha(data));
      await until(() => s.bytesOf(FrameType.PORT_CREDIT) === data.length, "credit for every byte");
    } finally {
      s.client.destroy();
      await s.forwards.close();
    }
  });

  test("a guest that sends beyond its window loses the channel", LIMIT, async () => {
    const s = await scriptedForward();
    try {
      s.reply(FrameType.PORT_CONNECTED, encodeCredit(1000));
      for (let sent = 0; sent <= ENGINE_WINDOW; sent += 512 * 1024) s.reply(FrameType.PORT_DATA_OUT, Buffer.alloc(512 * 1024));
      await until(() => s.fake.conn.lost !== undefined, "the channel to be dropped");
      assert.match(s.fake.conn.lost!.message, /beyond its window/);
    } finally {
      s.client.destroy();
      await s.forwards.close();
    }
  });

  test("an ERROR from the agent resets the host connection; a host reset sends PORT_CLOSE abort", LIMIT, async () => {
    const refused = await scriptedForward();
    try {
      const closed = new Promise((r) => refused.client.once("close", r));
      refused.reply(FrameType.ERROR, Buffer.from("connect 127.0.0.1:8080: Connection refused"));
      const err = await new Promise<NodeJS.ErrnoException | undefined>((r) => refused.client.once("error", r));
      assert.equal(err?.code, "ECONNRESET");
      await closed;
    } finally {
      await refused.forwards.close();
    }
    const s = await scriptedForward();
    try {
      s.reply(FrameType.PORT_CONNECTED, encodeCredit(1000));
      s.client.resetAndDestroy();
      await until(() => s.sentOf(FrameType.PORT_CLOSE).length === 1, "PORT_CLOSE");
      assert.deepEqual([...s.sentOf(FrameType.PORT_CLOSE)[0]!.payload], [1]);
      s.reply(FrameType.PORT_CLOSED);
    } finally {
      await s.forwards.close();
    }
  });
});

/** The real agent on the host, connecting to a server on the host's loopback. */
describe("the agent's half (real agent binary)", () => {
  async function withServer(onConnection: (s: Socket) => void, body: (port: number) => Promise<void>): Promise<void> {
    // An abort (PORT_CLOSE with reset) shows on the server's side as ECONNRESET.
    const server: Server = createServer({ allowHalfOpen: true }, (s) => {
      s.on("error", () => undefined);
      onConnection(s);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      await body((server.address() as { port: number }).port);
    } finally {
      server.close();
    }
  }

  test("the agent sends no more than its credit, and everything once credited", LIMIT, async () => {
    const data = randomBytes(3 << 20);
    await withServer((s) => s.end(data), async (port) => {
      const agent = await AgentDriver.start();
      try {
        const id = agent.allocId();
        const frames: Frame[] = [];
        const done = agent.track(id, (f) => frames.push(f));
        await agent.send(FrameType.PORT_CONNECT, id, encodePortConnect(port, 100_000));
        const received = () => frames.filter((f) => f.type === FrameType.PORT_DATA_OUT).reduce((n, f) => n + f.payload.length, 0);
        await until(() => received() === 100_000, "the first window");
        await sleep(200);
        assert.equal(received(), 100_000, "nothing beyond the window");
        assert.equal(frames[0]!.type, FrameType.PORT_CONNECTED);
        await agent.send(FrameType.PORT_CREDIT, id, encodeCredit(data.length));
        await until(() => frames.some((f) => f.type === FrameType.PORT_EOF), "the guest's end");
        const got = Buffer.concat(frames.filter((f) => f.type === FrameType.PORT_DATA_OUT).map((f) => f.payload));
        assert.equal(sha(got), sha(data));
        assert.ok(frames.every((f) => f.type !== FrameType.PORT_DATA_OUT || f.payload.length <= 256 * 1024));
        await agent.send(FrameType.PORT_SHUTDOWN, id);
        const r = await done;
        assert.equal(r.frames.at(-1)!.type, FrameType.PORT_CLOSED);
      } finally {
        await agent.stop();
      }
    });
  });

  test("a PORT_SHUTDOWN that arrives while the agent still connects takes effect once connected", LIMIT, async () => {
    await withServer((s) => s.resume().on("end", () => s.end("bye")), async (port) => {
      const agent = await AgentDriver.start();
      try {
        const id = agent.allocId();
        const done = agent.track(id);
        await agent.writeRaw(Buffer.concat([
          encodeFrame(FrameType.PORT_CONNECT, id, encodePortConnect(port, 1000)), encodeFrame(FrameType.PORT_SHUTDOWN, id),
        ]));
        const r = await done;
        assert.deepEqual(r.frames.map((f) => f.type), [FrameType.PORT_CONNECTED, FrameType.PORT_DATA_OUT, FrameType.PORT_EOF, FrameType.PORT_CLOSED]);
        assert.equal(r.frames[1]!.payload.toString(), "bye");
      } finally {
        await agent.stop();
      }
    });
  });

  test("engine bytes are written to the guest and credited back; half-close passes; CLOSE ends; refused is an ERROR", LIMIT, async () => {
    const sent = randomBytes(2 << 20);
    let serverGot: Promise<Buffer> | undefined;
    await withServer((s) => {
      const chunks: Buffer[] = [];
      s.on("data", (d: Buffer) => chunks.push(d));
      serverGot = new Promise((r) => s.on("end", () => {
        r(Buffer.concat(chunks));
        s.end();
      }));
    }, async (port) => {
      const agent = await AgentDriver.start();
      try {
        const id = agent.allocId();
        const frames: Frame[] = [];
        const done = agent.track(id, (f) => frames.push(f));
        await agent.send(FrameType.PORT_CONNECT, id, encodePortConnect(port, 1 << 20));
        await until(() => frames.length > 0, "PORT_CONNECTED");
        const window = decodeCredit(frames[0]!.payload);
        let inFlight = 0;
        let off = 0;
        const credited = () => frames.filter((f) => f.type === FrameType.PORT_CREDIT_OUT).reduce((n, f) => n + decodeCredit(f.payload), 0);
        while (off < sent.length) {
          await until(() => off - credited() < window, "credit");
          inFlight = Math.min(window - (off - credited()), 256 * 1024, sent.length - off);
          await agent.send(FrameType.PORT_DATA, id, sent.subarray(off, off + inFlight));
          off += inFlight;
        }
        await agent.send(FrameType.PORT_SHUTDOWN, id);
        assert.equal(sha(await until(() => serverGot !== undefined, "the connection").then(() => serverGot!)), sha(sent));
        const r = await done;
        assert.equal(r.frames.at(-1)!.type, FrameType.PORT_CLOSED);
        assert.equal(credited(), sent.length);

        // CLOSE while open: the agent answers PORT_CLOSED and frames for the ended id are ignored.
        const id2 = agent.allocId();
        const done2 = agent.track(id2);
        await agent.send(FrameType.PORT_CONNECT, id2, encodePortConnect(port, 1000));
        await agent.send(FrameType.PORT_CLOSE, id2, encodePortClose(true));
        assert.equal((await done2).frames.at(-1)!.type, FrameType.PORT_CLOSED);
        await agent.send(FrameType.PORT_DATA, id2, Buffer.from("late"));
      } finally {
        await agent.stop();
      }
    });
    // Nothing listens on that port any more.
    const agent = await AgentDriver.start();
    try {
      const closedPort = await new Promise<number>((r) => {
        const s = createServer();
        s.listen(0, "127.0.0.1", () => {
          const p = (s.address() as { port: number }).port;
          s.close(() => r(p));
        });
      });
      const r = await agent.op(FrameType.PORT_CONNECT, encodePortConnect(closedPort, 1000));
      assert.match(r.error ?? "", new RegExp(`connect 127\\.0\\.0\\.1:${closedPort}: Connection refused`));
      assert.equal((await agent.ping()).ok, true);
      assert.deepEqual(agent.stray.map((f) => f.type), []);
    } finally {
      await agent.stop();
    }
  });
});
