// Layer decompression (src/engine/image/decompress.ts): gzip and zstd told apart by content,
// zstd decoded by fzstd on this Node.js as a stream, a decompression bomb held to bounded memory,
// damaged data a clear error. zstd data is made by Debian's zstd command.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import { compressionOf, decompressed } from "../../src/engine/image/decompress.js";

const zstd = (data: Buffer, level = 3): Buffer => execFileSync("zstd", ["-q", "-c", `-${level}`], { input: data, maxBuffer: 1 << 30 });

/** A stream of `bytes` in chunks of 64 KiB, as a file read gives them. */
function chunks(bytes: Buffer): Readable {
  return Readable.from((function* () {
    for (let at = 0; at < bytes.length; at += 65536) yield bytes.subarray(at, at + 65536);
  })());
}

async function readAll(s: Readable): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of s) out.push(c as Buffer);
  return Buffer.concat(out);
}

describe("layer decompression", () => {
  const data = Buffer.concat([randomBytes(200_000), Buffer.from("compressible text\n".repeat(100_000))]);

  test("gzip, zstd and plain are recognised by their first bytes", () => {
    assert.equal(compressionOf(gzipSync(data)), "gzip");
    assert.equal(compressionOf(zstd(data)), "zstd");
    assert.equal(compressionOf(data.subarray(0, 4)), "none");
    assert.equal(compressionOf(Buffer.from([0x28, 0xb5])), "none", "too short to be zstd");
  });

  test("zstd and gzip decode to the original bytes", async () => {
    assert.deepEqual(await readAll(decompressed(chunks(zstd(data, 19)), "zstd")), data);
    assert.deepEqual(await readAll(decompressed(chunks(gzipSync(data)), "gzip")), data);
    // Several frames one after the other (what a parallel compressor writes) are one stream.
    const twoFrames = Buffer.concat([zstd(data.subarray(0, 100_000)), zstd(data.subarray(100_000))]);
    assert.deepEqual(await readAll(decompressed(chunks(twoFrames), "zstd")), data);
  });

  test("a zstd bomb is decoded as a stream: little is held in memory at any time", async () => {
    const zeros = Buffer.alloc(256 * 1024 * 1024);
    const bomb = zstd(zeros, 19);
    assert.ok(bomb.length < 64 * 1024, `256 MiB of zeros compress to ${bomb.length} bytes`);
    const hash = createHash("sha256");
    const before = process.memoryUsage().arrayBuffers;
    let peak = 0;
    let total = 0;
    for await (const c of decompressed(chunks(bomb), "zstd")) {
      total += (c as Buffer).length;
      hash.update(c as Buffer);
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
    }
    assert.equal(total, zeros.length);
    assert.equal(hash.digest("hex"), createHash("sha256").update(zeros).digest("hex"));
    assert.ok(peak < 64 * 1024 * 1024, `at most ${Math.round(peak / 1e6)} MB of buffers were held at once`);
  });

  test("cut-off or damaged zstd data is a clear error", async () => {
    const z = zstd(data);
    await assert.rejects(readAll(decompressed(chunks(z.subarray(0, z.length - 100)), "zstd")), /^Error: zstd data is truncated$/);
    const junk = Buffer.concat([z.subarray(0, 4), Buffer.alloc(4096, 0xff)]);
    await assert.rejects(readAll(decompressed(chunks(junk), "zstd")), /invalid zstd data|zstd data is truncated/);
  });
});
