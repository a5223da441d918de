// The file operations' pieces without a sandbox: the agent's stat records, mod_time's RFC 3339
// form, the SDK's FileInfo, and what the SDK sends or refuses before sending.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AgentProtocolError, decodeEntries, decodeStat, encodeStrings } from "../../src/protocol/agent-frames.js";
import { rfc3339, toWireFileInfo } from "../../src/engine/sandbox/file-mode.js";
import { toFileInfo } from "../../src/sdk/wire.js";
import { MatchlockError } from "../../src/sdk/index.js";
import { requestsOf, withClient } from "../helpers/sdk-fixture.js";

describe("agent stat records", () => {
  test("STAT_RESULT and ENTRIES carry size, mode and the modification time", () => {
    assert.deepEqual(decodeStat(encodeStrings(["12", String(0o100644), "981173106", "5"])), { size: 12, mode: 0o100644, mtimeMs: 981173106000, mtimeNs: 5 });
    assert.deepEqual(decodeStat(encodeStrings(["0", String(0o40755), "-1", "999999999"])), { size: 0, mode: 0o40755, mtimeMs: -1, mtimeNs: 999999999 });
    assert.deepEqual(decodeEntries(encodeStrings(["a", "1", "420", "0", "0", "b", "2", "420", "1", "500000000"])).map((e) => [e.name, e.mtimeMs]), [["a", 0], ["b", 1500]]);
  });

  test("a time beyond a Date's range is unknown, not an error; malformed records are the guest's protocol error", () => {
    assert.equal(decodeStat(encodeStrings(["1", "420", "9223372036854775807", "0"])).mtimeMs, undefined);
    for (const bad of [["1", "420", "x", "0"], ["1", "420", "0", "1000000000"], ["-1", "420", "0", "0"], ["1", "420", "0"], ["1", "420", "1.5", "0"]]) {
      assert.throws(() => decodeStat(encodeStrings(bad)), AgentProtocolError, bad.join(","));
    }
    assert.throws(() => decodeEntries(encodeStrings(["a", "1", "420"])), AgentProtocolError);
    assert.throws(() => decodeEntries(encodeStrings(["../x", "1", "420", "0", "0"])), AgentProtocolError);
  });
});

describe("mod_time on the wire", () => {
  test("RFC 3339 as Go marshals a time: nanoseconds without trailing zeros, UTC", () => {
    assert.equal(rfc3339(981173106000, 0), "2001-02-03T04:05:06Z");
    assert.equal(rfc3339(981173106123, 123456789), "2001-02-03T04:05:06.123456789Z");
    assert.equal(rfc3339(981173106120, 120000000), "2001-02-03T04:05:06.12Z");
    assert.equal(rfc3339(-1000, 0), "1969-12-31T23:59:59Z");
  });

  test("times RFC 3339 cannot write are Go's zero time", () => {
    assert.equal(rfc3339(undefined, 0), "0001-01-01T00:00:00Z");
    assert.equal(rfc3339(Date.UTC(10000, 0, 1), 0), "0001-01-01T00:00:00Z");
    assert.equal(rfc3339(Date.UTC(-5, 0, 1), 0), "0001-01-01T00:00:00Z");
  });

  test("a wire entry: Go's mode bits, is_dir, and the time", () => {
    assert.deepEqual(toWireFileInfo("d", { size: 0, mode: 0o40700, mtimeMs: 0, mtimeNs: 0 }), {
      name: "d", size: 0, mode: 2 ** 31 + 0o700, mod_time: "1970-01-01T00:00:00Z", is_dir: true,
    });
  });
});

describe("SDK FileInfo", () => {
  test("modTime from mod_time; absent for Go's zero time, a missing or a bad one (upstream engines)", () => {
    const f = toFileInfo({ name: "a", size: 1, mode: 420, is_dir: false, mod_time: "2001-02-03T04:05:06.123456789Z" });
    assert.equal(f.modTime?.toISOString(), "2001-02-03T04:05:06.123Z");
    for (const mod_time of ["0001-01-01T00:00:00Z", undefined, "yesterday", 5]) {
      assert.equal("modTime" in toFileInfo({ name: "a", mod_time }), false, String(mod_time));
    }
    assert.deepEqual(toFileInfo(null), { name: "", size: 0, mode: 0, isDir: false });
  });

  test("the file methods send their wire params", async () => {
    await withClient(async ({ fake, client }) => {
      const calls: Array<Promise<unknown>> = [
        client.removeFile("/a", { recursive: true }),
        client.removeFile("/b"),
        client.makeDir("/c", { parents: true, mode: 0o700 }),
        client.makeDir("/d"),
        client.renameFile("/e", "/f"),
        client.statFile("/g"),
      ];
      // The fake engine knows none of them: each is recorded, then answered -32601.
      for (const c of calls) await assert.rejects(c, MatchlockError);
      assert.deepEqual(requestsOf(fake, "remove_file").map((r) => r.params), [{ path: "/a", recursive: true }, { path: "/b" }]);
      assert.deepEqual(requestsOf(fake, "make_dir").map((r) => r.params), [{ path: "/c", parents: true, mode: 0o700 }, { path: "/d" }]);
      assert.deepEqual(requestsOf(fake, "rename_file").map((r) => r.params), [{ old_path: "/e", new_path: "/f" }]);
      assert.deepEqual(requestsOf(fake, "stat_file").map((r) => r.params), [{ path: "/g" }]);
    });
  });

  test("bad arguments are refused before anything is sent", async () => {
    await withClient(async ({ fake, client }) => {
      const refused = (call: Promise<unknown>, message: RegExp) => assert.rejects(call, (err: unknown) => err instanceof MatchlockError && err.kind === "invalid_argument" && message.test(err.message));
      await refused(client.makeDir("/x", { mode: 0o10000 }), /mode must be permission bits from 0 to 0o7777/);
      await refused(client.makeDir("/x", { mode: 1.5 }), /mode must be permission bits/);
      await refused(client.makeDir("/x", { parents: "yes" as unknown as boolean }), /parents must be true or false/);
      await refused(client.removeFile("/x", { recursive: 1 as unknown as boolean }), /recursive must be true or false/);
      await refused(client.renameFile("", "/y"), /path is required/);
      await refused(client.statFile(""), /path is required/);
      assert.deepEqual([...requestsOf(fake, "make_dir"), ...requestsOf(fake, "remove_file"), ...requestsOf(fake, "rename_file"), ...requestsOf(fake, "stat_file")], []);
    });
  });
});
