// The request envelope is checked by hand, not by a schema (it is on every exec's round trip):
// it must accept and refuse exactly what JSON-RPC and the spec say (through serve(), in process).
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { describe, test } from "node:test";
import { serve } from "../../src/engine/rpc/server.js";

/** Sends `lines` to an in-process serve() and returns its replies, parsed. No sandbox is made. */
async function replies(lines: string[]): Promise<unknown[]> {
  const input = new PassThrough();
  const output = new PassThrough();
  let text = "";
  output.on("data", (d: Buffer) => (text += d.toString()));
  const served = serve({ input, output, log: () => {}, handleSignals: false });
  input.end(lines.map((l) => l + "\n").join(""));
  await served;
  return text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as unknown);
}

const parseError = { jsonrpc: "2.0", error: { code: -32700, message: "Parse error" } };

describe("request envelope", () => {
  test("batches, scalars, bad ids and no method are parse errors without an id", async () => {
    const bad = ["[1,2]", "[]", '"a string"', "null", "7", "true",
      '{"method":"exec","id":-4}', '{"method":"exec","id":"seven"}', '{"method":"exec","id":1.5}',
      '{"method":"exec","id":9007199254740992}', '{"method":"exec","id":true}', '{"method":"exec","id":{}}', '{"method":"exec","id":[1]}', '{"jsonrpc":"2.0","id":4}', "{}"];
    assert.deepEqual(await replies(bad), bad.map(() => parseError));
  });

  test("ids 0, 2^53-1, null and none are accepted; a non-string method is an invalid request", async () => {
    const out = await replies([
      '{"jsonrpc":"2.0","method":"nope","id":0}',
      '{"jsonrpc":"2.0","method":"nope","id":9007199254740991}',
      '{"jsonrpc":"2.0","method":"nope","id":null}',
      '{"jsonrpc":"2.0","method":"nope"}',
      '{"jsonrpc":"2.0","method":5,"id":3}',
      '{"jsonrpc":"2.0","method":null,"id":4}',
    ]);
    const notFound = { code: -32601, message: "Method not found", data: { kind: "not_found" } };
    const invalid = { code: -32600, message: "Invalid request: method must be a string" };
    // Requests run concurrently and may be answered in any order (spec 1.5): a bad envelope is
    // answered as it is read, a method once it ran. So the replies are compared as a set.
    const sorted = (xs: unknown[]) => xs.map((x) => JSON.stringify(x)).sort();
    assert.deepEqual(sorted(out), sorted([
      { jsonrpc: "2.0", error: notFound, id: 0 },
      { jsonrpc: "2.0", error: notFound, id: 9007199254740991 },
      { jsonrpc: "2.0", error: notFound },
      { jsonrpc: "2.0", error: notFound },
      { jsonrpc: "2.0", error: invalid, id: 3 },
      { jsonrpc: "2.0", error: invalid, id: 4 },
    ]));
  });
});
