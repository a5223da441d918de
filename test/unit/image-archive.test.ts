// An imported archive (`docker save`, OCI layout; gzip'd or not) is unpacked to the store's work
// dir under the same cap as a layer (layer-size-limit.ts): a gzip bomb of an archive is refused
// before the bytes past the cap are written, with the cap's own error, and nothing is left.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { unpackArchive } from "../../src/engine/image/archive.js";
import { ImageStore } from "../../src/engine/image/index.js";
import { LayerTooLargeError, NoRoomForLayerError } from "../../src/engine/image/layer-size-limit.js";
import { treeSize } from "../../src/engine/image/tree-size.js";
import { dockerSave, gzip, tarBytes } from "../helpers/image-tarballs.js";

const MiB = 2 ** 20;

describe("unpacking an imported archive", () => {
  let dir: string;
  /** A docker save archive whose one layer is 8 MiB of zeros, gzip'd whole: ~8 KiB. */
  let bomb: string;
  const layer = tarBytes([{ path: "zeros", body: "\0".repeat(8 * MiB) }]);
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "matchlock-archive-test-"));
    process.env.MATCHLOCK_HOME = join(dir, "home");
    delete process.env.MATCHLOCK_IMAGES;
    const packed = gzip(dockerSave({ layers: [layer], config: {} }).tar);
    assert.ok(packed.length < 64 * 1024, `the archive is small: ${packed.length} bytes`);
    bomb = join(dir, "bomb.tar.gz");
    await writeFile(bomb, packed);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const freshDir = async (name: string): Promise<string> => {
    const d = join(dir, name);
    await mkdir(d);
    return d;
  };

  test("within the cap, the archive unpacks whole", async () => {
    const out = await freshDir("whole");
    await unpackArchive(bomb, out, { entry: { bytes: 9 * MiB, why: "the test's limit" } });
    const names = (await readdir(out)).sort();
    assert.deepEqual(names.filter((n) => !n.endsWith(".json") || n === "manifest.json"), ["layer0", "manifest.json"]);
    assert.equal(names.length, 3, names.join(" ")); // and the config
    assert.equal((await readFile(join(out, "layer0", "layer.tar"))).length, layer.length);
  });

  test("an entry past the cap is refused before any of it is written, with the layer cap's error", async () => {
    const out = await freshDir("capped");
    await assert.rejects(unpackArchive(bomb, out, { entry: { bytes: MiB, why: "the test's limit" } }), (e: unknown) => {
      assert.ok(e instanceof LayerTooLargeError, String(e));
      assert.equal(e.message, `layer0/layer.tar in the archive ${bomb} unpacks to more than 1 MiB: the test's limit`);
      return true;
    });
    const written = await treeSize(out);
    assert.ok(written < 4096, `${written} bytes were written`);
    await assert.rejects(readFile(join(out, "layer0", "layer.tar")), { code: "ENOENT" });
  });

  test("entries that together outgrow the disk's room are NoRoomForLayerError", async () => {
    const out = await freshDir("no-room");
    // Room for the layer alone (a header and its data), not for the other entries besides.
    const room = { bytes: 512 + layer.length, why: "the disk is full", noRoom: true };
    await assert.rejects(unpackArchive(bomb, out, { entry: { bytes: 9 * MiB, why: "the test's limit" }, total: room }),
      (e: unknown) => e instanceof NoRoomForLayerError && e.message === `the archive ${bomb} unpacks to more than 8 MiB: the disk is full`);
    assert.ok((await treeSize(out)) < 4096);
  });

  test("a damaged gzip stream is still a clear error", async () => {
    const cut = join(dir, "cut.tar.gz");
    await writeFile(cut, (await readFile(bomb)).subarray(0, 200));
    await assert.rejects(unpackArchive(cut, await freshDir("cut")),
      new RegExp(`^Error: ${cut}: not a readable gzip file: unexpected end of file$`));
  });

  test("import refuses the bomb under MATCHLOCK_MAX_LAYER_BYTES, leaving nothing in the store", async () => {
    const store = new ImageStore();
    process.env.MATCHLOCK_MAX_LAYER_BYTES = "1M";
    try {
      await assert.rejects(store.import("local/archive-bomb:1", bomb),
        (e: unknown) => e instanceof LayerTooLargeError &&
          e.message === `layer0/layer.tar in the archive ${bomb} unpacks to more than 1 MiB: at most 1 MiB is accepted (MATCHLOCK_MAX_LAYER_BYTES)`);
    } finally {
      delete process.env.MATCHLOCK_MAX_LAYER_BYTES;
    }
    assert.deepEqual(await store.list(), []);
    assert.deepEqual(await readdir(join(store.root, "tmp")).catch(() => []), []);
    assert.deepEqual(await readdir(join(store.root, "sha256")).catch(() => []), []);
    // Under the default cap the same archive imports.
    const img = await store.import("local/archive-bomb:1", bomb);
    assert.equal((await readFile(join(img.rootfs, "zeros"))).length, 8 * MiB);
  });
});
