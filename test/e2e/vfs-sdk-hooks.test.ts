// End to end: the SDK-side VFS hooks (protocol spec 5.8) on a real sandbox (gVisor or
// micro-VM, from $MATCHLOCK_BACKEND). Action and mutate hooks decide in the SDK before its own
// file calls go out; event hooks run on the file events the engine sends for the sandbox's
// commands' operations.
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { MatchlockError, Sandbox, type Client, type VFSHookEvent } from "../../src/sdk/index.js";
import { BACKEND, BUSYBOX, newClient, setUpE2E } from "../helpers/e2e.js";
import { eventually } from "../helpers/sdk-fixture.js";

describe(`SDK-side VFS hooks on a ${BACKEND} sandbox`, () => {
  let client: Client;
  const safe: VFSHookEvent[] = [];
  const dangerous: string[] = [];
  const actions: string[] = [];

  before(async () => {
    await setUpE2E();
    client = newClient();
    await client.create(new Sandbox(BUSYBOX)
      .withVFSInterception({
        rules: [
          { name: "no env files", ops: ["read", "write"], path: "/workspace/*.env", actionHook: (r) => (actions.push(`${r.op} ${r.path}`), "block") },
          { ops: ["readdir"], actionHook: (r) => (actions.push(`${r.op} ${r.path}`), "allow") },
          { path: "/workspace/*.txt", mutateHook: (r) => `[${r.size} bytes]` },
          { phase: "after", ops: ["create"], path: "/workspace/*", hook: (e) => { safe.push(e); } },
          {
            phase: "after", ops: ["mkdir"], dangerousHook: async (c, e) => {
              // It gets the client and may call it.
              dangerous.push(`${e.path} ${(await c.exec(`test -d ${e.path} && echo there`)).stdout.trim()}`);
            },
          },
        ],
      })
      .options());
  });
  after(async () => {
    await client?.close();
    await client?.remove();
  });

  test("an action hook's block refuses the SDK's own call before it is sent; allow lets it through", async () => {
    await assert.rejects(client.writeFile("/workspace/a.env", "KEY=1"),
      (e: MatchlockError) => e.kind === "policy_refused" && /vfs action hook blocked operation: write \/workspace\/a\.env/.test(e.message));
    assert.equal((await client.exec("ls /workspace/a.env 2>&1 || echo missing")).stdout.trim().endsWith("missing"), true);
    await client.exec("echo KEY=2 > /workspace/b.env");
    await assert.rejects(client.readFile("/workspace/b.env"), /vfs action hook blocked operation: read \/workspace\/b\.env/);
    const stream = client.readFileStream("/workspace/b.env");
    await assert.rejects(async () => { for await (const _ of stream) { /* nothing may arrive */ } }, /blocked operation: read/);
    assert.ok((await client.listFiles("/workspace")).some((f) => f.name === "b.env"));
    assert.deepEqual(actions, ["write /workspace/a.env", "read /workspace/b.env", "read /workspace/b.env", "readdir /workspace"]);
  });

  test("a mutate hook replaces what writeFile sends; a stream it would need whole is refused", async () => {
    await client.writeFile("/workspace/note.txt", "hello");
    assert.equal((await client.readFile("/workspace/note.txt")).toString(), "[5 bytes]");
    await client.writeFile("/workspace/note.bin", "hello");
    assert.equal((await client.readFile("/workspace/note.bin")).toString(), "hello");
    await assert.rejects(client.writeFile("/workspace/big.txt", Readable.from([Buffer.from("x")])), /a vfs mutateHook matches \/workspace\/big\.txt: pass the content as a string or Buffer/);
  });

  test("event hooks run on the sandbox's own operations: hook with the event, dangerousHook with the client too", async () => {
    await client.exec("echo hi > /workspace/from-command && mkdir /workspace/made");
    await eventually(() => assert.ok(safe.some((e) => e.path === "/workspace/from-command"), JSON.stringify(safe)));
    const created = safe.find((e) => e.path === "/workspace/from-command")!;
    assert.equal(created.op, "create");
    assert.equal(created.uid, 0);
    await eventually(() => assert.deepEqual(dangerous, ["/workspace/made there"]));
  });
});
