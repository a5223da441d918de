// vfs.interception: the create field's checks and what the engine keeps of it, and the SDK's
// checks and wire form.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CreateParamsError, parseCreateParams } from "../../src/engine/sandbox/create.js";
import { opMask, VFS_OPS } from "../../src/engine/vfs/interception/config.js";
import { hideMounts } from "../../src/engine/vfs/interception/guest-mounts.js";
import { MatchlockError, Sandbox, type Client, type VFSActionRequest, type VFSHookRule } from "../../src/sdk/index.js";
import { LocalVfsHooks, globToRegExp } from "../../src/sdk/vfs-hooks.js";
import { toCreateParams } from "../../src/sdk/wire.js";

const create = (interception: unknown) => parseCreateParams({ image: "alpine", vfs: { interception } }).config;

describe("vfs.interception at create", () => {
  test("block rules are kept with their ops (aliases and case folded, empty = all) and globs; allow rules are not", () => {
    const c = create({
      emit_events: true,
      rules: [
        { ops: ["READ_DIR", "removeall", "write"], path: "/workspace/*.env", action: " Block " },
        { path: "/workspace/secret", action: "block", phase: "before", timeout_ms: 100 },
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
      [{ rules: [{ action: "block", timeout_ms: -1 }] }, /timeout_ms must not be negative/],
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

  test("unknown fields and misplaced hooks are refused, not dropped", () => {
    const refused: Array<[object, RegExp]> = [
      [{ paths: "/x" }, /unknown field paths/],
      [{ hook: () => {} }, /hook runs after the operation: set phase "after"/],
      [{ actionHook: () => "allow", phase: "after" }, /actionHook runs before the operation/],
      [{ mutateHook: () => null, hook: () => {}, phase: "after" }, /at most one of hook, dangerousHook, mutateHook and actionHook \(got hook, mutateHook\)/],
      [{ actionHook: () => "allow", action: "block" }, /its action must be "allow" or empty/],
      [{ actionHook: "block" }, /actionHook must be a function/],
      [{ actionHook: () => "allow", timeoutMs: -1 }, /timeoutMs must be a non-negative integer/],
    ];
    for (const [rule, message] of refused) {
      assert.throws(() => new Sandbox("alpine").withVFSInterception({ rules: [rule as never] }), (e: Error) => e instanceof MatchlockError && message.test(e.message), message.source);
    }
    assert.throws(() => new Sandbox("alpine").withVFSInterception({ emit: true } as never), /unknown vfs interception field emit/);
  });

  test("SDK-side hooks stay off the wire; an event hook turns the events on", () => {
    const wire = (rules: VFSHookRule[], emitEvents?: boolean) => toCreateParams(new Sandbox("alpine").withVFSInterception({ rules, emitEvents }).options()).vfs;
    assert.equal(wire([{ actionHook: () => "allow" }, { mutateHook: () => null, phase: "before" }]), undefined);
    assert.deepEqual(wire([{ hook: () => {}, phase: "after" }, { action: "block", path: "/w/x" }]), {
      interception: { emit_events: true, rules: [{ action: "block", path: "/w/x" }] },
    });
    assert.deepEqual(wire([{ dangerousHook: () => {}, phase: "after" }], false), { interception: { emit_events: true } });
  });
});

describe("SDK-side VFS hooks", () => {
  const client = {} as Client;
  const hooksOf = (rules: VFSHookRule[]) => LocalVfsHooks.of({ rules }, client)!;

  test("path globs are Go's filepath.Match: * and ? stay within one name, classes, escapes", () => {
    const m = (glob: string, path: string) => globToRegExp(glob).test(path);
    assert.ok(m("/w/*.env", "/w/a.env"));
    assert.ok(!m("/w/*.env", "/w/sub/a.env"));
    assert.ok(m("/w/?.txt", "/w/a.txt") && !m("/w/?.txt", "/w/ab.txt"));
    assert.ok(m("/w/[a-c]x", "/w/bx") && !m("/w/[a-c]x", "/w/dx"));
    assert.ok(m("/w/[^a-c]x", "/w/dx") && !m("/w/[^a-c]x", "/w/ax") && !m("/w/[^a]x", "/w//x"));
    assert.ok(m("/w/\\*", "/w/*") && !m("/w/\\*", "/w/a"));
    assert.ok(m("/w/a.b+(c)", "/w/a.b+(c)") && !m("/w/a.b", "/w/axb"));
  });

  test("action hooks: allow, empty and nothing go on; block and unknown answers refuse; ops and paths match", async () => {
    const seen: VFSActionRequest[] = [];
    const hooks = hooksOf([
      { ops: ["read"], path: "/w/*.env", actionHook: (r) => (seen.push(r), "BLOCK") },
      { ops: ["readdir"], actionHook: () => "maybe" },
      { actionHook: () => undefined },
    ]);
    await hooks.checkAction("read", "/w/a.txt");
    await hooks.checkAction("write", "/w/a.env", 3, 0o600);
    await assert.rejects(hooks.checkAction("read", "/w/a.env"), (e: MatchlockError) => e.kind === "policy_refused" && /vfs action hook blocked operation: read \/w\/a\.env/.test(e.message));
    await assert.rejects(hooks.checkAction("readdir", "/w"), /unknown action "maybe"/);
    assert.deepEqual(seen.map(({ op, path, size, mode }) => ({ op, path, size, mode })), [{ op: "read", path: "/w/a.env", size: 0, mode: 0 }]);
    assert.equal(typeof seen[0]!.uid, "number");
  });

  test("mutate hooks are chained in order; nothing leaves the content; another type is an error", async () => {
    const sizes: number[] = [];
    const hooks = hooksOf([
      { path: "/w/*.txt", mutateHook: (r) => (sizes.push(r.size), "one two") },
      { ops: ["write"], mutateHook: (r) => (sizes.push(r.size), null) },
      { mutateHook: (r) => (sizes.push(r.size), new TextEncoder().encode("3 bytes!").slice(0, 3)) },
    ]);
    assert.ok(hooks.mutates("/w/a.txt") && hooks.mutates("/elsewhere"));
    assert.equal((await hooks.mutate("/w/a.txt", Buffer.from("x"), 0o644)).toString(), "3 b");
    assert.deepEqual(sizes, [1, 7, 7]);
    await assert.rejects(hooksOf([{ mutateHook: () => 42 as never }]).mutate("/w/a", Buffer.from("x"), 0o644), /returned number: return a string, bytes, or nothing/);
  });

  test("event hooks: safe ones run one event at a time (events meanwhile are dropped), dangerous ones at once with the client", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const safe: string[] = [];
    const dangerous: Array<[unknown, string]> = [];
    const hooks = hooksOf([
      { phase: "after", ops: ["write"], hook: async (e) => { safe.push(e.path); await gate; } },
      { phase: "after", path: "/w/*", dangerousHook: (c, e) => { dangerous.push([c, e.op]); } },
    ]);
    const event = (op: string, path: string) => ({ op, path, size: 0, mode: 0, uid: 0, gid: 0 });
    hooks.onFileEvent(event("WRITE", "/w/a"));
    hooks.onFileEvent(event("write", "/w/b"));
    hooks.onFileEvent(event("read", "/w/c"));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(safe, ["/w/a"]);
    assert.deepEqual(dangerous, [[client, "write"], [client, "write"], [client, "read"]]);
    release();
    await new Promise((r) => setTimeout(r, 10));
    hooks.onFileEvent(event("write", "/w/d"));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(safe, ["/w/a", "/w/d"]);
  });

  test("a hook's timeout stops the waiting only", async () => {
    let finished = false;
    const hooks = hooksOf([{ timeoutMs: 20, actionHook: () => new Promise((r) => setTimeout(() => { finished = true; r("allow"); }, 80)) }]);
    await assert.rejects(hooks.checkAction("read", "/w/a"), /vfs action hook timed out after 20 ms/);
    assert.equal(finished, false);
    assert.equal(LocalVfsHooks.of({ rules: [{ action: "block" }] }, client), undefined);
  });
});
