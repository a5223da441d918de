// The JSON.parse shortcut for file chunk lines (src/protocol/file-chunk-lines.ts): it must read
// exactly the lines our SDK and engine write, the same way JSON.parse does, and step aside for
// every other form of them.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { PassThrough } from "node:stream";
import { describe, test } from "node:test";
import { Base64Data, Base64Text, encodeJsonLine } from "../../src/protocol/base64.js";
import { parseReadChunkResult, parseWriteChunkRequest } from "../../src/protocol/file-chunk-lines.js";
import { matchShape, shape } from "../../src/protocol/line-shape.js";
import type { EngineLink } from "../../src/sdk/engine-link.js";
import { Transport } from "../../src/sdk/transport.js";

/** A line as encodeJsonLine writes it, without its newline. */
function line(message: object): Buffer {
  const out = encodeJsonLine(message);
  const buf = typeof out === "string" ? Buffer.from(out) : out;
  return buf.subarray(0, buf.length - 1);
}

const bytes = randomBytes(100_003);

/** The message with its Base64Text as the string JSON.parse would have made of it. */
function withText<T extends object>(message: T): unknown {
  return JSON.parse(JSON.stringify(message, (_k, v: unknown) => (v instanceof Base64Text ? v.text.toString("latin1") : v)));
}

describe("write_file_chunk requests", () => {
  // The SDK's request: {jsonrpc, method, id} and then params (src/sdk/transport.ts).
  const sdkLine = (id: number, offset: number, data: Buffer) =>
    line({ jsonrpc: "2.0", method: "write_file_chunk", id, params: { handle: 3, offset, data: new Base64Data(data) } });

  test("as the SDK writes them: the same as JSON.parse gives", () => {
    for (const [id, offset, data] of [[1, 0, bytes], [987654, 1048576, Buffer.alloc(0)], [0, 5, Buffer.from([0xff, 0xfe])]] as const) {
      const l = sdkLine(id, offset, data);
      const parsed = JSON.parse(l.toString("latin1")) as { method: string; id: number; params: { data: string } };
      const fast = parseWriteChunkRequest(l)!;
      assert.deepEqual(withText(fast), { method: parsed.method, id: parsed.id, params: parsed.params });
      assert.deepEqual(fast.params.data.decode(), data);
    }
  });

  test("any other form of the same request is left to JSON.parse", () => {
    const data = bytes.subarray(0, 30).toString("base64");
    const others = [
      `{"jsonrpc":"2.0","method":"write_file_chunk","id":1,"params":{"offset":0,"handle":3,"data":"${data}"}}`, // key order
      `{"jsonrpc":"2.0","method":"write_file_chunk","id":1,"params":{"handle":3,"offset":0,"data":"${data}"}} `, // trailing space
      `{"jsonrpc":"2.0","method":"write_file_chunk","id":1,"params":{"handle":3,"offset":0,"data":"${data}"}}\r`,
      `{"jsonrpc": "2.0","method":"write_file_chunk","id":1,"params":{"handle":3,"offset":0,"data":"${data}"}}`,
      `{"jsonrpc":"2.0","method":"write_file_chunk","id":01,"params":{"handle":3,"offset":0,"data":"${data}"}}`, // leading zero
      `{"jsonrpc":"2.0","method":"write_file_chunk","id":1.5,"params":{"handle":3,"offset":0,"data":"${data}"}}`,
      `{"jsonrpc":"2.0","method":"write_file_chunk","id":1234567890123456,"params":{"handle":3,"offset":0,"data":"${data}"}}`, // 16 digits
      `{"jsonrpc":"2.0","method":"write_file_chunk","id":1,"params":{"handle":-3,"offset":0,"data":"${data}"}}`,
      `{"jsonrpc":"2.0","method":"write_file_chunk","id":1,"params":{"handle":3,"offset":0,"data":"ab\\/cd"}}`, // an escape
      `{"jsonrpc":"2.0","method":"write_file_chunk","id":1,"params":{"handle":3,"offset":0,"data":"abcd","x":"y"}}`,
      `{"jsonrpc":"2.0","method":"write_file_chunk","id":1,"params":{"handle":3,"offset":0,"data":"abcd"}}}`,
      `{"jsonrpc":"2.0","method":"write_file_chunk","id":1,"params":{"handle":3,"offset":0,"data":"abcd`, // cut short
      `{"jsonrpc":"2.0","method":"write_file_open","id":1,"params":{"handle":3,"offset":0,"data":"abcd"}}`,
    ];
    for (const other of others) assert.equal(parseWriteChunkRequest(Buffer.from(other, "latin1")), undefined, other);
    // Non-ASCII inside the string (UTF-8 bytes) is not base64 either.
    const utf8 = Buffer.from(`{"jsonrpc":"2.0","method":"write_file_chunk","id":1,"params":{"handle":3,"offset":0,"data":"é"}}`, "utf8");
    assert.equal(parseWriteChunkRequest(utf8), undefined);
  });
});

describe("read_file_chunk results", () => {
  // The engine's reply: {jsonrpc, result} and then id (src/engine/rpc/writer.ts).
  const engineLine = (id: number, data: Buffer, eof: boolean) => line({ jsonrpc: "2.0", result: { data: new Base64Data(data), eof }, id });

  test("as the engine writes them: the same as JSON.parse gives", () => {
    for (const [id, data, eof] of [[7, bytes, false], [8, Buffer.alloc(0), true], [123456789012345, bytes.subarray(0, 1), true]] as const) {
      const l = engineLine(id, data, eof);
      const parsed = JSON.parse(l.toString("latin1")) as Record<string, unknown>;
      const fast = parseReadChunkResult(l)!;
      assert.deepEqual(withText(fast), { id: parsed.id, result: parsed.result });
      assert.deepEqual(fast.result.data.decode(), data);
    }
  });

  test("other results, errors and notifications are left to JSON.parse", () => {
    for (const other of [
      '{"jsonrpc":"2.0","result":{"data":"abcd","eof":true,"more":1},"id":1}',
      '{"jsonrpc":"2.0","result":{"data":"abcd","eof":null},"id":1}',
      '{"jsonrpc":"2.0","result":{"data":"abcd","eof":truex},"id":1}',
      '{"jsonrpc":"2.0","result":{"content":"abcd"},"id":1}',
      '{"jsonrpc":"2.0","error":{"code":-32000,"message":"x"},"id":1}',
      '{"jsonrpc":"2.0","result":{"data":"abcd","eof":false},"id":"1"}',
    ]) assert.equal(parseReadChunkResult(Buffer.from(other)), undefined, other);
  });
});

describe("line shapes", () => {
  test("a base64 hole must be closed by a quote, or the shape is a bug", () => {
    assert.throws(() => matchShape(Buffer.from("[abc]"), shape("[{base64}]")), /closing quote/);
  });
});

describe("encodeJsonLine", () => {
  test("encodes each Base64Data's bytes to base64 once", () => {
    const data = randomBytes(1000);
    let encodes = 0;
    const toString = data.toString.bind(data);
    data.toString = ((encoding?: BufferEncoding, start?: number, end?: number) => {
      if (encoding === "base64") encodes++;
      return toString(encoding, start, end);
    }) as typeof data.toString;
    const out = encodeJsonLine({ a: new Base64Data(data) });
    assert.equal(encodes, 1);
    assert.equal(out.toString(), JSON.stringify({ a: toString("base64") }) + "\n");
  });
});

describe("the SDK takes the fast path for read chunks only where it asked for one", () => {
  test("a read_file_chunk-shaped result of any other call comes as JSON.parse gives it", async () => {
    const input = new PassThrough();
    const output = new PassThrough();
    const link: EngineLink = { input, output, ended: new Promise(() => {}), endInput: () => input.end(), kill: () => output.end() };
    const transport = new Transport(async () => link);
    await transport.start();
    const asked: number[] = [];
    input.on("data", (d: Buffer) => {
      for (const l of d.toString().split("\n").filter(Boolean)) {
        const id = (JSON.parse(l) as { id: number }).id;
        asked.push(id);
        output.write(`{"jsonrpc":"2.0","result":{"data":"aGk=","eof":true},"id":${id}}\n`);
      }
    });
    const plain = await transport.request("something_else", {});
    assert.deepEqual(plain, { data: "aGk=", eof: true });
    const chunk = await transport.request("read_file_chunk", { handle: 1 }, { fileChunk: true });
    assert.ok(chunk.data instanceof Base64Text);
    assert.equal(chunk.eof, true);
    assert.deepEqual(asked, [1, 2]);
  });
});
