// The codecs on execStream's hot path: the engine's frame decoder (frames reassembled from reads
// of any size, each payload copied once) and the SDK's shortcut past JSON.parse for output
// notifications, which must give exactly what JSON.parse gives or step aside.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { FrameDecoder, FrameType, encodeFrame, type Frame } from "../../src/protocol/agent-frames.js";
import { Base64Data, encodeJsonLine } from "../../src/protocol/base64.js";
import { parseOutputNotification } from "../../src/sdk/output-notification.js";

describe("FrameDecoder", () => {
  test("frames cut into pieces of every size come out whole, in order, not sharing memory", () => {
    const payloads = [randomBytes(300 * 1024), Buffer.alloc(0), randomBytes(5), randomBytes(64 * 1024 + 3)];
    const stream = Buffer.concat(payloads.map((p, i) => encodeFrame(i % 2 ? FrameType.STDERR : FrameType.STDOUT, i + 1, p)));
    for (const sizes of [[1], [2, 7, 9, 10], [4096], [65536], [stream.length]]) {
      const decoder = new FrameDecoder();
      const frames: Frame[] = [];
      const pieces: Buffer[] = [];
      for (let at = 0, k = 0; at < stream.length; k++) {
        const n = sizes[k % sizes.length]!;
        pieces.push(Buffer.from(stream.subarray(at, at + n)));
        frames.push(...decoder.push(pieces.at(-1)!));
        at += n;
      }
      // frames own their bytes: they do not pin (or change with) the reads they came in
      for (const piece of pieces) piece.fill(0xee);
      assert.equal(frames.length, payloads.length, `pieces of ${sizes.join(",")}`);
      frames.forEach((f, i) => {
        assert.equal(f.id, i + 1);
        assert.equal(f.type, i % 2 ? FrameType.STDERR : FrameType.STDOUT);
        assert.ok(f.payload.equals(payloads[i]!), `frame ${i} with pieces of ${sizes.join(",")}`);
      });
    }
  });
});

describe("SDK output notifications without JSON.parse", () => {
  const engineLine = (method: string, id: number, data: Buffer) =>
    encodeJsonLine({ jsonrpc: "2.0", method, params: { id, data: new Base64Data(data) } }) as Buffer;
  const body = (line: Buffer | string) => Buffer.from(typeof line === "string" ? line : line.subarray(0, -1));

  test("the engine's lines give what JSON.parse gives", () => {
    for (const [method, id, data] of [
      ["exec_stream.stdout", 1, randomBytes(256 * 1024)],
      ["exec_stream.stderr", 123456789, randomBytes(7)],
      ["exec_stream.stdout", 0, Buffer.alloc(0)],
    ] as const) {
      const line = body(engineLine(method, id, data));
      const parsed = JSON.parse(line.toString("utf8")) as { method: string; params: unknown };
      assert.deepEqual(parseOutputNotification(line), { method: parsed.method, params: parsed.params });
      assert.ok(Buffer.from(parseOutputNotification(line)!.params.data, "base64").equals(data));
    }
  });

  test("any other shape is left to JSON.parse", () => {
    const data = Buffer.from("hello").toString("base64");
    const others = [
      JSON.stringify({ jsonrpc: "2.0", method: "exec_stream.stdout", params: { id: 1, data } }, null, 1), // spaces
      JSON.stringify({ method: "exec_stream.stdout", jsonrpc: "2.0", params: { id: 1, data } }), // key order
      JSON.stringify({ jsonrpc: "2.0", method: "exec_stream.stdout", params: { data, id: 1 } }),
      JSON.stringify({ jsonrpc: "2.0", method: "exec_stream.stdout", params: { id: 1, data, more: 1 } }),
      JSON.stringify({ jsonrpc: "2.0", method: "exec_stream.stdout", params: { id: null, data } }),
      JSON.stringify({ jsonrpc: "2.0", method: "exec_stream.stdin", params: { id: 1, data } }),
      JSON.stringify({ jsonrpc: "2.0", method: "exec_stream.stdout", params: { id: 1.5, data } }),
      '{"jsonrpc":"2.0","method":"exec_stream.stdout","params":{"id":01,"data":"aGk="}}', // not JSON
      '{"jsonrpc":"2.0","method":"exec_stream.stdout","params":{"id":1,"data":"\\u0041Gk="}}', // an escape
      '{"jsonrpc":"2.0","method":"exec_stream.stdout","params":{"id":1,"data":"aGk=","x":"y"}}',
      '{"jsonrpc":"2.0","method":"exec_stream.stdout","params":{"id":1,"data":"aGk="}} ',
      '{"jsonrpc":"2.0","method":"exec_stream.stdout","params":{"id":1,"data":"aGk=é"}}',
      '{"jsonrpc":"2.0","method":"exec_stream.stdout","params":{"id":1,"data":"aGk=',
      '{"jsonrpc":"2.0","method":"exec_stream.stdout","params":{"id":1,"data":"}}',
      '{"jsonrpc":"2.0","method":"exec_stream.stdout","params":{"id":1234567890123456,"data":"aGk="}}',
    ];
    for (const line of others) assert.equal(parseOutputNotification(body(line)), undefined, line);
  });
});
