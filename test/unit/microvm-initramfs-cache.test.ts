// Pruning of the micro-VM initramfs cache (src/engine/backends/microvm/initramfs-cache.ts): the
// file just built, recently used files and the few most recently used stay; other initramfs
// files go; nothing else in the directory is touched.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { markUsed, pruneInitramfs, UNUSED_GRACE_MS } from "../../src/engine/backends/microvm/initramfs-cache.js";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

describe("initramfs cache pruning", () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "matchlock-initramfs-cache-"));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  /** A fresh cache dir holding `files` last used (mtime) the given time ago. */
  async function cache(name: string, files: Record<string, number>): Promise<string> {
    const dir = join(root, name);
    await mkdir(join(dir, "kernel"), { recursive: true });
    const now = Date.now();
    for (const [file, ago] of Object.entries(files)) {
      await writeFile(join(dir, file), "cpio");
      const when = new Date(now - ago);
      await utimes(join(dir, file), when, when);
    }
    return dir;
  }

  test("keeps the current file, files used within the grace period and the most recently used; removes the rest", async () => {
    const dir = await cache("mixed", {
      "initramfs-00000000000000aa.cpio": 5 * HOUR, // the one just chosen: kept however old its mtime
      "initramfs-00000000000000b1.cpio": 1 * MINUTE,
      "initramfs-00000000000000b2.cpio": 10 * MINUTE,
      "initramfs-00000000000000c1.cpio": 2 * HOUR,
      "initramfs-00000000000000c2.cpio": 3 * HOUR,
      "initramfs-00000000000000c3.cpio": 48 * HOUR,
      // Not initramfs files of ours: an unfinished build, anything else.
      "initramfs-00000000000000d1.cpio.tmp-123-abcd": 48 * HOUR,
      "notes.txt": 48 * HOUR,
    });
    const removed = await pruneInitramfs(dir, join(dir, "initramfs-00000000000000aa.cpio"), { keepRecent: 1 });
    assert.deepEqual(removed.sort(), ["initramfs-00000000000000c1.cpio", "initramfs-00000000000000c2.cpio", "initramfs-00000000000000c3.cpio"]);
    assert.deepEqual((await readdir(dir)).sort(), [
      "initramfs-00000000000000aa.cpio", "initramfs-00000000000000b1.cpio", "initramfs-00000000000000b2.cpio",
      "initramfs-00000000000000d1.cpio.tmp-123-abcd", "kernel", "notes.txt",
    ]);
  });

  test("all old: the most recently used few are kept (default 2), older ones removed", async () => {
    const dir = await cache("old", {
      "initramfs-0000000000000001.cpio": 2 * HOUR,
      "initramfs-0000000000000002.cpio": 3 * HOUR,
      "initramfs-0000000000000003.cpio": 4 * HOUR,
      "initramfs-0000000000000004.cpio": 5 * HOUR,
    });
    const current = join(dir, "initramfs-00000000000000ff.cpio");
    await writeFile(current, "new");
    assert.deepEqual((await pruneInitramfs(dir, current)).sort(), ["initramfs-0000000000000003.cpio", "initramfs-0000000000000004.cpio"]);
    assert.deepEqual((await readdir(dir)).sort(), ["initramfs-0000000000000001.cpio", "initramfs-0000000000000002.cpio", "initramfs-00000000000000ff.cpio", "kernel"]);
  });

  test("markUsed makes an old file recent, so the next prune keeps it", async () => {
    const dir = await cache("used", {
      "initramfs-0000000000000001.cpio": 2 * HOUR,
      "initramfs-0000000000000002.cpio": 3 * HOUR,
    });
    const chosen = join(dir, "initramfs-0000000000000002.cpio");
    await markUsed(chosen);
    assert.ok(Date.now() - (await stat(chosen)).mtimeMs < UNUSED_GRACE_MS / 2);
    const current = join(dir, "initramfs-00000000000000ff.cpio");
    await writeFile(current, "new");
    assert.deepEqual(await pruneInitramfs(dir, current, { keepRecent: 0 }), ["initramfs-0000000000000001.cpio"]);
    // A file that vanished meanwhile (another engine pruned it) is no error.
    await markUsed(join(dir, "initramfs-0000000000000001.cpio"));
  });
});
