// The overlay mounts' snapshot disk: sized to hold the snapshots (bytes and one block per
// entry) plus the sandbox's disk size, with inodes for the snapshots' entries and new files.
import assert from "node:assert/strict";
import { test } from "node:test";
import { snapshotDiskGeometry } from "../../src/engine/vfs/snapshot-disk.js";

const MiB = 1024 * 1024;

test("the disk holds the snapshots plus the disk size, and little more", () => {
  const g = snapshotDiskGeometry([{ bytes: 10 * MiB, entries: 256 }, { bytes: 0, entries: 1 }], 16);
  assert.ok(g.bytes >= 10 * MiB + 257 * 4096 + 16 * MiB, `${g.bytes}`);
  assert.ok(g.bytes <= 32 * MiB, `${g.bytes}`);
  assert.equal(g.bytes % MiB, 0);
  assert.ok(g.inodes >= 257 + 1024, `${g.inodes}`);
});

test("a sandbox with a large disk size gets a large (sparse) disk, never a smaller one", () => {
  assert.ok(snapshotDiskGeometry([{ bytes: 0, entries: 1 }], 5120).bytes >= 5120 * MiB);
});
