// The decoded copy of a zstd layer (src/engine/image/decoded-layer.ts) is held to a size limit
// while it is written: a zstd bomb fails with a clear error and leaves no file behind; the limit
// comes from MATCHLOCK_MAX_LAYER_BYTES and the disk's free space (layer-size-limit.ts).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, statfs, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { decodeZstdOnce } from "../../src/engine/image/decoded-layer.js";
import { DEFAULT_MAX_LAYER_BYTES, FREE_MARGIN, LayerTooLargeError, layerSizeLimit, maxLayerBytes, NoRoomForLayerError } from "../../src/engine/image/layer-size-limit.js";
import { ZstdLimitError } from "../../src/engine/image/zstd-frames.js";

const zstd = (data: Buffer): Buffer => execFileSync("zstd", ["-q", "-c", "-19"], { input: data, maxBuffer: 1 << 30 });

describe("a zstd layer decoded to disk", () => {
  let dir: string;
  let work: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "matchlock-decoded-test-"));
    work = join(dir, "work");
    await mkdir(work);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test("within the limit: the plain tar and its digest", async () => {
    const data = randomBytes(300_000);
    const layer = join(dir, "small.tar.zst");
    await writeFile(layer, zstd(data));
    const decoded = await decodeZstdOnce(layer, work, 2, { bytes: data.length, why: "test" });
    assert.ok(decoded);
    assert.deepEqual(await readFile(decoded.file), data);
    assert.equal(decoded.diffId, `sha256:${createHash("sha256").update(data).digest("hex")}`);
    await decoded.remove();
    assert.deepEqual(await readdir(work), []);
  });

  test("a bomb past the limit fails with a clear error, its partial file removed", async () => {
    // 256 MiB of zeros: ~8 KiB of zstd.
    const layer = join(dir, "bomb.tar.zst");
    await writeFile(layer, zstd(Buffer.alloc(256 * 2 ** 20)));
    await assert.rejects(decodeZstdOnce(layer, work, 2, { bytes: 2 ** 20, why: "the test's limit" }),
      (e: unknown) => e instanceof LayerTooLargeError && e.message === "it decodes to more than 1 MiB: the test's limit");
    assert.deepEqual(await readdir(work), []);
  });

  test("past a limit set by the disk's free space the error is not a refusal of the image", async () => {
    // A pull treats a refused layer as a bad image and forgets its blobs; a full disk must not.
    const layer = join(dir, "bomb.tar.zst");
    await assert.rejects(decodeZstdOnce(layer, work, 2, { bytes: 2 ** 20, why: "the disk is full", noRoom: true }),
      (e: unknown) => e instanceof NoRoomForLayerError && !(e instanceof ZstdLimitError) && e.message === "it decodes to more than 1 MiB: the disk is full");
    assert.deepEqual(await readdir(work), []);
  });

  test("MATCHLOCK_MAX_LAYER_BYTES: bytes or K/M/G/T, a clear error for anything else", () => {
    assert.equal(maxLayerBytes(undefined), DEFAULT_MAX_LAYER_BYTES);
    assert.equal(DEFAULT_MAX_LAYER_BYTES, 64 * 2 ** 30);
    assert.equal(maxLayerBytes("4096"), 4096);
    assert.equal(maxLayerBytes("2G"), 2 * 2 ** 30);
    assert.equal(maxLayerBytes("512MiB"), 512 * 2 ** 20);
    for (const bad of ["0", "-1", "ten", "1.5G", "9999999999T"]) {
      assert.throws(() => maxLayerBytes(bad), new RegExp(`^Error: MATCHLOCK_MAX_LAYER_BYTES=${JSON.stringify(bad).replace(/\./g, "\\.")} is not a size`));
    }
  });

  test("the limit is the smaller of the maximum and the disk's free space less the margin", async () => {
    const fs = await statfs(work);
    const room = fs.bavail * fs.bsize - FREE_MARGIN;
    assert.deepEqual(await layerSizeLimit(work, 4096), { bytes: 4096, why: "at most 4096 bytes is accepted (MATCHLOCK_MAX_LAYER_BYTES)" });
    const byDisk = await layerSizeLimit(work, Number.MAX_SAFE_INTEGER);
    // Others write to this disk meanwhile: within 64 MiB of what it had.
    assert.ok(Math.abs(byDisk.bytes - Math.max(0, room)) < 64 * 2 ** 20, `${byDisk.bytes} vs ${room}`);
    assert.match(byDisk.why, new RegExp(`^${work} has room for only [\\d.]+ MiB \\(keeping 256 MiB free\\)$`));
  });
});
