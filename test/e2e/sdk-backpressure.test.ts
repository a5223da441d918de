// End to end: a slow exec_stream consumer slows the command down; the SDK does not buffer the
// command's output without bound. No timing is asserted, only how much ever waited in memory.
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { before, describe, test } from "node:test";
import { Sandbox } from "../../src/sdk/index.js";
import { BACKEND, BUSYBOX, newClient, setUpE2E } from "../helpers/e2e.js";

/** A sink that takes each chunk only after a pause, recording the most it ever had queued. */
function slowSink(highWaterMark: number): Writable & { received: number; maxQueued: number } {
  const sink = new Writable({
    highWaterMark,
    decodeStrings: true,
    write(chunk: Buffer, _enc, callback) {
      sink.received += chunk.length;
      sink.maxQueued = Math.max(sink.maxQueued, sink.writableLength);
      setTimeout(callback, 1);
    },
  }) as Writable & { received: number; maxQueued: number };
  sink.received = 0;
  sink.maxQueued = 0;
  return sink;
}

describe("exec_stream back-pressure", () => {
  before(async () => {
    await setUpE2E();
  });

  // Under TCG the micro-VM moves output ~10x slower; 50 MB there shows the same thing.
  const bytes = (BACKEND === "microvm" ? 50 : 200) * 1024 * 1024;
  test(`a slow stdout Writable and ${bytes >> 20} MB of output: bounded buffering, every byte delivered`, async (t) => {
    await using client = newClient();
    await client.launch(new Sandbox(BUSYBOX));
    const highWaterMark = 64 * 1024;
    const stdout = slowSink(highWaterMark);
    const r = await client.execStream(`head -c ${bytes} /dev/zero`, { stdout });
    assert.equal(r.exitCode, 0);
    assert.equal(stdout.received, bytes);
    t.diagnostic(`${bytes} bytes through a slow Writable (highWaterMark ${highWaterMark}): at most ${stdout.maxQueued} bytes queued in it`);
    // Ignoring back-pressure, the queue grows with whatever the engine sends ahead of the
    // consumer (tens to hundreds of MB). Honouring it, one read of the engine's stdout
    // (a 64 KiB chunk of base64 lines) can arrive on top of a full queue.
    assert.ok(stdout.maxQueued <= highWaterMark + 256 * 1024, `${stdout.maxQueued} bytes queued`);
  });
});
