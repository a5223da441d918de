// The sandbox CA's leaf cache: bounded, most recently used names kept.
import assert from "node:assert/strict";
import { test } from "node:test";
import { MAX_CACHED_LEAVES, MitmCa } from "../../src/engine/net/mitm-ca.js";

test("leaves for at most MAX_CACHED_LEAVES names are kept; a name in use stays, the least recently used goes", async () => {
  const ca = await MitmCa.create("test");
  const first = ca.contextFor("first.test");
  const early = ca.contextFor("early.test");
  for (let i = 0; i < MAX_CACHED_LEAVES + 10; i++) {
    await ca.contextFor(`name-${i}.test`);
    assert.equal(ca.contextFor("first.test"), first, "a name used again keeps its leaf");
  }
  assert.equal(ca.cachedLeaves, MAX_CACHED_LEAVES);
  assert.notEqual(ca.contextFor("early.test"), early, "the least recently used name lost its leaf, and gets a new one");
  await early;
});
