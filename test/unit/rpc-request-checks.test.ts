// The checks on the exec round trip that skip a schema parse (issue 8) must accept and refuse
// exactly what the schemas did: the request envelope (through serve() itself, in process) and
// exec's params (the quick check against the zod schema it stands in front of).
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { describe, test } from "node:test";
import { serve } from "../../src/engine/rpc/server.js";
import { execParams, wellFormedExecParams } from "../../src/engine/rpc/exec-params.js";

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
    const notFound = { code: -32601, message: "Method not found" };
    const invalid = { code: -32600, message: "Invalid request: method must be a string" };
    assert.deepEqual(out, [
      { jsonrpc: "2.0", error: notFound, id: 0 },
      { jsonrpc: "2.0", error: notFound, id: 9007199254740991 },
      { jsonrpc: "2.0", error: notFound },
      { jsonrpc: "2.0", error: notFound },
      { jsonrpc: "2.0", error: invalid, id: 3 },
      { jsonrpc: "2.0", error: invalid, id: 4 },
    ]);
  });
});

describe("exec params quick check", () => {
  const samples: unknown[] = [
    {}, { command: "" }, { command: "echo hi" }, { command: "x", working_dir: "/tmp" }, { working_dir: "/" },
    { command: "x", extra: 1 }, { command: 5 }, { command: null }, { command: ["a"] }, { command: "x", working_dir: 3 },
    { command: "x", working_dir: null }, [], ["echo"], "echo", 7, true, Object.create(null) as object,
  ];

  test("accepts only what the schema accepts, with the same result", () => {
    for (const params of samples) {
      const quick = wellFormedExecParams(params);
      const full = execParams.safeParse(params);
      if (quick) assert.deepEqual(quick, full.success ? full.data : "schema refused it", JSON.stringify(params));
      // Everything it passes on goes to the schema, which gives the error as before.
    }
  });

  test("takes the common shapes itself", () => {
    assert.deepEqual(wellFormedExecParams({ command: "true" }), { command: "true" });
    assert.deepEqual(wellFormedExecParams({ command: "ls", working_dir: "/w" }), { command: "ls", working_dir: "/w" });
    assert.deepEqual(wellFormedExecParams({}), { command: "" });
    assert.equal(wellFormedExecParams({ command: 1 }), undefined);
    assert.equal(wellFormedExecParams(["true"]), undefined);
  });
});
