// vfs.interception: the create field's checks and what the engine keeps of it, and the SDK's
// checks and wire form.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CreateParamsError, parseCreateParams } from "../../src/engine/sandbox/create.js";
import { opMask, VFS_OPS } from "../../src/engine/vfs/interception/config.js";
import { hideMounts } from "../../src/engine/vfs/interception/guest-mounts.js";
import { MatchlockError, Sandbox } from "../../src/sdk/index.js";
import { toCreateParams } from "../../src/sdk/wire.js";

const create = (interception: unknown) => parseCreateParams({ image: "alpine", vfs: { interception } }).config;

describe("vfs.interception at create", () => {
  test("block rules are kept with their ops (aliases and case folded, empty = all) and globs; allow rules are not", () => {
    const c = create({
      emit_events: true,
      rules: [
        { ops: ["READ_DIR", "removeall", "write"], path: "/workspace/*.env", action: " Block " },
        { path: "/workspace/secret", action: "block", phase: "before" },
        { ops: ["read"], action: "allow" },
        { ops: ["read"] },
      ],
    });
    assert.deepEqual(c.vfsInterception, {
      blockRules: [
        { ops: ["readdir", "remove_all", "write"], glob: "/workspace/*.env" },
        { ops: [...VFS_OPS], glob: "/workspace/secret" },
      ],
    });
    assert.equal(opMask(["stat", "truncate"]), 1 + (1 << 15));
    assert.deepEqual(create({}).vfsInterception, { blockRules: [] });
    assert.equal(parseCreateParams({ image: "alpine" }).config.vfsInterception, undefined);
  });

  test("what could not act as written is refused by name", () => {
    const refused: Array<[unknown, RegExp]> = [
      [{ rules: [{ ops: ["delete"], action: "block" }] }, /^vfs\.interception\.rules\.0\.ops\.0: unknown op "delete"/],
      [{ rules: [{ action: "mutate" }] }, /action must be "allow" or "block"/],
      [{ rules: [{ path: "secret/*", action: "block" }] }, /"secret\/\*" is not absolute/],
      [{ rules: [{ path: "/a/[b", action: "block" }] }, /unclosed \[/],
      [{ rules: [{ path: "/a\\", action: "block" }] }, /unfinished escape/],
      [{ rules: [{ action: "block", phase: "after" }] }, /a block rule must run before the operation/],
      [{ rules: [{ action: "block", timeout_ms: 100 }] }, /timeout_ms applies to SDK-side hooks only/],
      [{ rules: [{ action: "block", callback_id: "x" }] }, /unknown field vfs\.interception\.rules\.0\.callback_id/],
      [{ emit_events: "yes" }, /emit_events must be a boolean/],
    ];
    for (const [interception, message] of refused) {
      assert.throws(() => create(interception), (e: Error) => e instanceof CreateParamsError && message.test(e.message), JSON.stringify(interception));
    }
  });
});

describe("intercepted mounts", () => {
  test("are made at hidden paths and served at theirs, parents first; an extra disk inside one is refused", async () => {
    const { mounts, served } = await hideMounts([{ kind: "tmpfs", guestPath: "/workspace/a" }, { kind: "tmpfs", guestPath: "/workspace" }], ["/data"]);
    assert.deepEqual(mounts, [{ kind: "tmpfs", guestPath: "/.matchlock/vfs/1" }, { kind: "tmpfs", guestPath: "/.matchlock/vfs/2" }]);
    assert.deepEqual(served, [{ hidden: "/.matchlock/vfs/2", guestPath: "/workspace" }, { hidden: "/.matchlock/vfs/1", guestPath: "/workspace/a" }]);
    await assert.rejects(hideMounts([{ kind: "tmpfs", guestPath: "/workspace" }], ["/workspace/disk"]), /extra disk at \/workspace\/disk: it is inside \/workspace/);
  });
});

describe("SDK withVFSInterception", () => {
  test("sends upstream's wire form: action lower-cased (default allow), empty fields left out", () => {
    const params = toCreateParams(new Sandbox("alpine").withVFSInterception({
      emitEvents: true,
      rules: [{ name: "n", ops: ["create"], path: "/workspace/x", action: "BLOCK" }, { path: "/workspace" }],
    }).options());
    assert.deepEqual(params.vfs, {
      interception: { emit_events: true, rules: [{ action: "block", name: "n", ops: ["create"], path: "/workspace/x" }, { action: "allow", path: "/workspace" }] },
    });
    assert.equal(toCreateParams(new Sandbox("alpine").withVFSInterception({}).options()).vfs, undefined);
  });

  test("SDK-side hooks and unknown fields are refused, not dropped", () => {
    assert.throws(() => new Sandbox("alpine").withVFSInterception({ rules: [{ hook: () => {} } as never] }), (e: Error) => e instanceof MatchlockError && /hook \(an SDK-side VFS hook\) is not supported/.test(e.message));
    assert.throws(() => new Sandbox("alpine").withVFSInterception({ rules: [{ paths: "/x" } as never] }), /unknown field paths/);
    assert.throws(() => new Sandbox("alpine").withVFSInterception({ emit: true } as never), /unknown vfs interception field emit/);
  });
});
