// The engine's request line reader: a caller that stops early (the line after `close`) must
// leave the stream alone, since on a socket destroying it would also cut replies being written.
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { STOP_READING, consumeLines } from "../../src/engine/rpc/line-reader.js";

test("stopping after a line does not destroy the input stream", async () => {
  const input = new PassThrough();
  input.write('{"method":"close"}\n{"method":"exec"}\n');
  const seen: string[] = [];
  await consumeLines(input, 1024, (event) => {
    if ("line" in event) seen.push(event.line.toString());
    return STOP_READING;
  });
  assert.deepEqual(seen, ['{"method":"close"}']);
  assert.equal(input.destroyed, false);
});

test("lines split across chunks and a last line without newline are all read", async () => {
  const input = new PassThrough();
  input.write('{"a":');
  input.write('1}\n{"b":2}');
  input.end();
  const seen: string[] = [];
  await consumeLines(input, 1024, (event) => void ("line" in event && seen.push(event.line.toString())));
  assert.deepEqual(seen, ['{"a":1}', '{"b":2}']);
});

test("a line handler's promise holds the later lines until it settles, in order", async () => {
  const input = new PassThrough();
  input.write("slow\nfast\n");
  const seen: string[] = [];
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const done = consumeLines(input, 1024, (event) => {
    if (!("line" in event)) return undefined;
    const text = event.line.toString();
    seen.push(text);
    return text === "slow" ? held : undefined;
  });
  await new Promise((r) => setImmediate(r));
  input.write("later\n");
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(seen, ["slow"]);
  assert.equal(input.isPaused(), true);
  release();
  input.end();
  await done;
  assert.deepEqual(seen, ["slow", "fast", "later"]);
});

test("a stream that fails rejects after the lines that did arrive, and one closed early says so", async () => {
  const failing = new PassThrough();
  failing.write("one\n");
  const seen: string[] = [];
  const done = consumeLines(failing, 1024, (event) => void ("line" in event && seen.push(event.line.toString())));
  await new Promise((r) => setImmediate(r));
  failing.destroy(new Error("boom"));
  await assert.rejects(done, /boom/);
  assert.deepEqual(seen, ["one"]);

  const cut = new PassThrough();
  const early = consumeLines(cut, 1024, () => undefined);
  cut.destroy();
  await assert.rejects(early, { code: "ERR_STREAM_PREMATURE_CLOSE" });
});

test("a line handler that throws rejects the reading with its error, and no later line is handled", async () => {
  const input = new PassThrough();
  const seen: string[] = [];
  const reading = consumeLines(input, 1024, (event) => {
    if (!("line" in event)) return undefined;
    seen.push(event.line.toString());
    if (event.line.toString() === "b") throw new Error("handler broke");
    return undefined;
  });
  input.write("a\nb\nc\n");
  await assert.rejects(reading, /handler broke/);
  assert.deepEqual(seen, ["a", "b"]);
});
