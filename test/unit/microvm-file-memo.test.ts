// The micro-VM backend's memo of values computed from files (src/engine/backends/microvm/file-memo.ts):
// computed once while the files stay the same, again when one is rewritten or replaced, and kept
// apart by salt.
import assert from "node:assert/strict";
import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { FileMemo } from "../../src/engine/backends/microvm/file-memo.js";

const dirP = mkdtemp(join(tmpdir(), "matchlock-file-memo-"));
after(async () => rm(await dirP, { recursive: true, force: true }));

test("one computation per file identity and salt", async () => {
  const dir = await dirP;
  const a = join(dir, "a");
  const b = join(dir, "b");
  await writeFile(a, "one");
  await writeFile(b, "two");
  const memo = new FileMemo<number>();
  let computed = 0;
  const get = (salt?: string) => memo.get([a, b], () => ++computed, salt);
  assert.equal(await get(), 1);
  assert.equal(await get(), 1, "same files: not computed again");
  assert.equal(await get("other"), 2, "another salt is another value");
  await writeFile(b, "three!"); // rewritten in place: size and times change
  assert.equal(await get(), 3);
  await writeFile(join(dir, "new"), "three!");
  await rename(join(dir, "new"), b); // replaced: another inode
  assert.equal(await get(), 4);
  assert.equal(await get(), 4);
  await assert.rejects(memo.get([join(dir, "missing")], () => 0), /ENOENT/);
});
