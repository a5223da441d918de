// The engine's request line reader: a caller that stops early (the line after `close`) must
// leave the stream alone, since on a socket destroying it would also cut replies being written.
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { readLines } from "../../src/engine/rpc/line-reader.js";

test("stopping after a line does not destroy the input stream", async () => {
  const input = new PassThrough();
  input.write('{"method":"close"}\n{"method":"exec"}\n');
  const seen: string[] = [];
  for await (const event of readLines(input, 1024)) {
    if ("line" in event) seen.push(event.line.toString());
    break;
  }
  assert.deepEqual(seen, ['{"method":"close"}']);
  assert.equal(input.destroyed, false);
});

test("lines split across chunks and a last line without newline are all read", async () => {
  const input = new PassThrough();
  input.write('{"a":');
  input.write('1}\n{"b":2}');
  input.end();
  const seen: string[] = [];
  for await (const event of readLines(input, 1024)) if ("line" in event) seen.push(event.line.toString());
  assert.deepEqual(seen, ['{"a":1}', '{"b":2}']);
});
