import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { OutputSink } from "../../src/sdk/output-sink.js";

/** A Writable that takes no chunk until release() is called, and every chunk after. */
function heldWritable(highWaterMark: number) {
  const callbacks: Array<() => void> = [];
  let open = false;
  let received = "";
  const stream = new Writable({
    highWaterMark,
    write(chunk: Buffer, _enc, cb) {
      received += chunk.toString();
      if (open) cb();
      else callbacks.push(() => cb());
    },
  });
  const release = () => {
    open = true;
    callbacks.splice(0).forEach((cb) => cb());
  };
  return { stream, release, received: () => received };
}

describe("OutputSink back-pressure", () => {
  it("asks the caller to wait while the target is full, and lets go on 'drain'", async () => {
    const target = heldWritable(4);
    const sink = new OutputSink(target.stream);
    assert.equal(sink.write(Buffer.from("ab")), undefined, "room left: no wait");
    const wait = sink.write(Buffer.from("cdef"));
    assert.ok(wait instanceof Promise, "full: the caller must wait");
    assert.equal(sink.write(Buffer.from("g")), wait, "one shared wait while full");
    let drained = false;
    void wait!.then(() => (drained = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(drained, false);
    target.release();
    await wait;
    await sink.end();
    assert.equal(target.received(), "abcdefg");
  });

  it("callbacks get the bytes as Buffers and never make the caller wait", () => {
    const seen: Buffer[] = [];
    const sink = new OutputSink((t) => seen.push(t));
    assert.equal(sink.write(Buffer.from([0xe2, 0x82])), undefined);
    assert.deepEqual(seen, [Buffer.from([0xe2, 0x82])]);
  });
});
