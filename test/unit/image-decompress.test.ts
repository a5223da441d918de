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
import { ZstdLimitError } from "../../src/engine/image/zstd-frames.js";

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

  describe("frame headers are judged before the decoder allocates their window", () => {
    // Hand-made frames (RFC 8878): magic, header descriptor, window descriptor, optional content
    // size, then one empty raw block marked last (header bytes 01 00 00).
    const MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
    const LAST_EMPTY_RAW = [0x01, 0x00, 0x00];
    /** A frame with window 2^(10+exponent) + mantissa eighths, no checksum. */
    const frame = (exponent: number, mantissa = 0, contentSize?: number): Buffer => {
      const wd = (exponent << 3) | mantissa;
      if (contentSize === undefined) return Buffer.from([...MAGIC, 0x00, wd, ...LAST_EMPTY_RAW]);
      // Frame content size flag 2: four bytes. (Its content does not really match: the guard speaks first.)
      const fcs = Buffer.alloc(4);
      fcs.writeUInt32LE(contentSize);
      return Buffer.from([...MAGIC, 0x80, wd, ...fcs, ...LAST_EMPTY_RAW]);
    };
    const refused = (re: RegExp) => (e: unknown) => e instanceof ZstdLimitError && re.test(e.message);

    test("a window over 128 MiB is refused with a clear error, nothing allocated", async () => {
      const before = process.memoryUsage().arrayBuffers;
      // 1.5 GiB: fzstd would allocate (and copy within) all of it for this 9-byte stream.
      await assert.rejects(readAll(decompressed(chunks(frame(20, 4)), "zstd")), refused(/^zstd frame at byte 0 asks for a 1536 MiB window; at most 128 MiB is accepted$/));
      assert.ok(process.memoryUsage().arrayBuffers - before < 16 * 1024 * 1024);
      // Exactly 128 MiB is fine.
      assert.deepEqual(await readAll(decompressed(chunks(frame(17)), "zstd")), Buffer.alloc(0));
    });

    test("a later frame of a multi-frame stream is judged too, even split across reads", async () => {
      const stream = Buffer.concat([zstd(data.subarray(0, 50_000)), frame(21)]);
      const oneByteAtATime = Readable.from((function* () {
        for (let at = 0; at < stream.length; at++) yield stream.subarray(at, at + 1);
      })());
      await assert.rejects(readAll(decompressed(oneByteAtATime, "zstd")), refused(new RegExp(`^zstd frame at byte ${stream.length - 9} asks for a 2048 MiB window`)));
    });

    test("a window far beyond the frame's declared content size is refused", async () => {
      await assert.rejects(readAll(decompressed(chunks(frame(16, 0, 100)), "zstd")), refused(/asks for a 64 MiB window for 100 bytes of content$/));
    });

    test("many tiny frames each asking for a big window are refused once they ask for far more than they give", async () => {
      const many = Buffer.concat(Array.from({ length: 100 }, () => frame(16))); // 64 MiB windows, no content
      await assert.rejects(readAll(decompressed(chunks(many), "zstd")), refused(/^zstd frame at byte 18: the frames so far asked for 192 MiB of windows but decoded to only 0 bytes$/));
    });

    test("well-formed streams pass: skippable frames, checksums, content sizes, many frames, fed a byte at a time", async () => {
      const skippable = Buffer.from([0x5a, 0x2a, 0x4d, 0x18, 5, 0, 0, 0, 1, 2, 3, 4, 5]);
      const parts = [data.subarray(0, 1000), data.subarray(1000, 300_000), data.subarray(300_000)];
      // zstd writes a content size and a checksum by default; --no-check drops the checksum.
      const noCheck = execFileSync("zstd", ["-q", "-c", "--no-check"], { input: parts[1] });
      const stream = Buffer.concat([skippable, zstd(parts[0]!), noCheck, skippable, zstd(parts[2]!, 19)]);
      const bytes = Readable.from((function* () {
        for (let at = 0; at < stream.length; at += 7) yield stream.subarray(at, at + 7);
      })());
      assert.deepEqual(await readAll(decompressed(bytes, "zstd")), data);
    });
  });
});
