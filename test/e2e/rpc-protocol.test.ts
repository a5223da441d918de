// The engine's JSON-RPC surface, spoken raw, as any SDK of the protocol would: bad input gets
// the spec's errors and the session carries on; EOF tears the sandbox down.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { BUSYBOX, eventually, leftovers, setUpE2E } from "../helpers/e2e.js";
import { RawSession } from "../helpers/raw-rpc.js";

describe("matchlock rpc, raw", () => {
  let home: string;
  let s: RawSession;
  let vmId: string;

  before(async () => {
    home = await setUpE2E();
    s = new RawSession();
  });
  after(() => {
    s.proc.kill("SIGKILL");
  });

  test("before create: VM-bound methods say VM not created", async () => {
    const r = await s.call("exec", { command: "true" }, 1);
    assert.deepEqual(r, { jsonrpc: "2.0", error: { code: -32000, message: "VM not created", data: { kind: "failed" } }, id: 1 });
  });

  test("malformed lines get a parse error without id, and the session goes on", async () => {
    for (const bad of ["{not json", "[1,2]", '"a string"', '{"jsonrpc":"2.0","method":"exec","id":-4}', '{"method":"exec","id":"seven"}', "\u0000\u00ff garbage"]) {
      s.sendLine(bad);
      assert.deepEqual(await s.next(), { jsonrpc: "2.0", error: { code: -32700, message: "Parse error" } }, bad);
    }
  });

  test("unknown methods and missing image", async () => {
    assert.deepEqual((await s.call("frobnicate", {}, 2)).error, { code: -32601, message: "Method not found", data: { kind: "not_found" } });
    const r = await s.call("create", {}, 3);
    assert.equal(r.error.code, -32602);
    assert.equal(r.error.message, "image is required (e.g., alpine:latest)");
    const neg = await s.call("create", { image: BUSYBOX, resources: { memory_mb: -5 } }, 4);
    assert.equal(neg.error.code, -32602);
    assert.match(neg.error.message, /memory_mb.*negative/);
    const mount = await s.call("create", { image: BUSYBOX, vfs: { workspace: "/workspace", mounts: { "/workspace/../etc": { type: "memory" } } } }, 5);
    assert.equal(mount.error.code, -32602);
    assert.match(mount.error.message, /normalised/);
    const backend = await s.call("create", { image: BUSYBOX, backend: "firecracker" }, 6);
    assert.equal(backend.error.code, -32602);
    assert.equal(backend.error.message, "backend must be microvm, gvisor or auto");
  });

  test("an oversized line is refused and nothing else is lost", async () => {
    s.sendLine(Buffer.alloc(11 * 1024 * 1024, 0x61));
    const r = await s.next();
    assert.equal(r.error.code, -32600);
    assert.match(r.error.message, /exceeds/);
    assert.equal(r.id, undefined);
    // With an id near either end of the line, the reply carries it, so no client waits forever.
    const content = "A".repeat(11 * 1024 * 1024);
    s.sendLine(`{"jsonrpc":"2.0","id":77,"method":"write_file","params":{"path":"/tmp/x","content":"${content}"}}`);
    const withId = await s.next();
    assert.equal(withId.id, 77);
    assert.equal(withId.error.code, -32600);
  });

  test("create, then exec, exec_stream notifications before the response", async () => {
    const created = await s.call("create", { image: BUSYBOX }, 10);
    vmId = created.result.id;
    assert.match(vmId, /^vm-[0-9a-f]{8}$/);
    const ex = await s.call("exec", { command: "echo hi; exit 4" }, 11);
    assert.deepEqual({ ...ex.result, duration_ms: 0 }, { exit_code: 4, stdout: "aGkK", stderr: "", duration_ms: 0 });
    s.send({ jsonrpc: "2.0", method: "exec_stream", params: { command: "echo a; echo b >&2" }, id: 12 });
    const msgs = [await s.next(), await s.next(), await s.next()];
    const response = msgs.pop();
    assert.deepEqual(new Set(msgs.map((m) => `${m.method}:${m.params.id}:${Buffer.from(m.params.data, "base64")}`)),
      new Set(["exec_stream.stdout:12:a\n", "exec_stream.stderr:12:b\n"]));
    assert.equal(response.id, 12);
    assert.equal(response.result.exit_code, 0);
    assert.equal(response.result.stdout, undefined);
  });

  test("params errors: missing params, wrong types, bad base64", async () => {
    assert.equal((await s.call("exec", undefined, 20)).error.code, -32602);
    assert.equal((await s.call("exec", { command: 42 }, 21)).error.code, -32602);
    const b64 = await s.call("write_file", { path: "/tmp/x", content: "!!not base64!!" }, 22);
    assert.deepEqual(b64.error, { code: -32602, message: "invalid base64 content", data: { kind: "invalid_argument" } });
  });

  test("a request without id still runs; its reply has no id", async () => {
    s.send({ jsonrpc: "2.0", method: "write_file", params: { path: "/tmp/noid", content: "bm9pZA==" } });
    assert.deepEqual(await s.next(), { jsonrpc: "2.0", result: {} });
    const r = await s.call("read_file", { path: "/tmp/noid" }, 30);
    assert.equal(Buffer.from(r.result.content, "base64").toString(), "noid");
  });

  test("requests run concurrently and may finish out of order", async () => {
    // The first exec waits for a file that the test writes only once the second exec has answered
    // (was: `sleep 1`, which a loaded TCG micro-VM can outlast before `echo fast` has run). Its
    // wait has a limit, so that an engine running requests one by one fails the order check
    // below instead of hanging.
    const gate = "/tmp/order-gate";
    s.send({ jsonrpc: "2.0", method: "exec", params: { command: `i=0; while [ ! -e ${gate} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; echo slow` }, id: 40 });
    s.send({ jsonrpc: "2.0", method: "exec", params: { command: "echo fast" }, id: 41 });
    const first = await s.next();
    assert.equal(first.id, 41);
    assert.equal(Buffer.from(first.result.stdout, "base64").toString(), "fast\n");
    s.send({ jsonrpc: "2.0", method: "write_file", params: { path: gate, content: "eA==" }, id: 42 });
    const rest = [await s.next(), await s.next()];
    assert.deepEqual(rest.map((m) => m.id).sort(), [40, 42]);
    assert.equal(Buffer.from(rest.find((m) => m.id === 40).result.stdout, "base64").toString(), "slow\n");
  });

  test("cancel stops a running exec", async () => {
    // Cancelled once it runs, which the test sees through a file it makes (was: a 300 ms sleep).
    s.send({ jsonrpc: "2.0", method: "exec", params: { command: "touch /tmp/cancel-me-running; sleep 60" }, id: 50 });
    const deadline = Date.now() + 60_000;
    for (let id = 500; !(await s.call("read_file", { path: "/tmp/cancel-me-running" }, id)).result; id++) {
      assert.ok(Date.now() < deadline, "the exec to cancel did not start");
      await new Promise((r) => setTimeout(r, 100));
    }
    const replies = [await s.call("cancel", { id: 50 }, 51), await s.next()];
    const byId = new Map(replies.map((m) => [m.id, m]));
    assert.deepEqual(byId.get(51).result, { cancelled: true });
    assert.equal(byId.get(50).error.code, -32003);
  });

  test("a second create in the same session is refused", async () => {
    const r = await s.call("create", { image: BUSYBOX }, 60);
    assert.equal(r.error.code, -32000);
    assert.match(r.error.message, /already has sandbox/);
  });

  test("stdin EOF tears the sandbox down and the engine exits 0", async () => {
    s.proc.stdin.end();
    assert.equal(await s.exited, 0);
    assert.deepEqual(await eventually(() => leftovers(vmId, home)), []);
  });
});
