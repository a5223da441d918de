// `matchlock serve`: the socket's protocol and permissions, stale sockets, two servers, clean
// exit, and the SDK's errors when no server is there. No sandboxes here (see e2e/resident-engine).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, chown, mkdir, mkdtemp, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Client, MatchlockError, Sandbox } from "../../src/sdk/index.js";
import { CLI, cli } from "../helpers/e2e.js";
import { SocketSession, startServer } from "../helpers/resident.js";

const T = { timeout: 60_000 };

async function freshHome(): Promise<{ home: string; env: Record<string, string> }> {
  const home = await mkdtemp(join(tmpdir(), "matchlock-serve-"));
  process.env.MATCHLOCK_HOME = home; // for cli(): never the real engine home
  return { home, env: { MATCHLOCK_HOME: home } };
}

/** A socket file nobody listens on: its server was SIGKILLed, so it never removed it. */
async function staleSocket(path: string): Promise<void> {
  const script = `require("net").createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, "SIGKILL"))`;
  await new Promise((resolve) => spawn(process.execPath, ["-e", script], { stdio: "ignore" }).on("exit", resolve));
  assert.ok((await stat(path)).isSocket());
}

describe("matchlock serve", () => {
  test("serves JSON-RPC on an owner-only socket, one independent session per connection", T, async () => {
    const { home, env } = await freshHome();
    const server = await startServer(join(home, "run", "engine.sock"), env);
    try {
      assert.equal((await stat(server.socketPath)).mode & 0o777, 0o600);
      assert.equal((await stat(join(home, "run"))).mode & 0o777, 0o700);
      const a = new SocketSession(server.socketPath);
      const b = new SocketSession(server.socketPath);
      assert.deepEqual(await a.call("exec", { command: "true" }, 1), { jsonrpc: "2.0", error: { code: -32000, message: "VM not created", data: { kind: "failed" } }, id: 1 });
      assert.equal((await b.call("no_such_method", undefined, 9)).error.code, -32601);
      a.sendLine("{not json");
      assert.deepEqual(await a.next(), { jsonrpc: "2.0", error: { code: -32700, message: "Parse error" } });
      // `close` ends a session (and its connection) like it ends `matchlock rpc`; others go on.
      assert.deepEqual(await a.call("close", undefined, 2), { jsonrpc: "2.0", result: {}, id: 2 });
      a.sendLine("{}");
      await a.closed;
      assert.equal((await b.call("list_files", { path: "/" }, 10)).error.message, "VM not created");
      b.socket.end(); // EOF ends the session
      await b.closed;
    } finally {
      assert.equal(await server.stop(), 143);
    }
    assert.equal(existsSync(server.socketPath), false, "the socket is removed on exit");
    assert.match(server.stderr(), /stopping: received SIGTERM/);
  });

  test("a second server on the same socket refuses to start, and the first keeps serving", T, async () => {
    const { home, env } = await freshHome();
    const path = join(home, "engine.sock");
    const first = await startServer(path, env);
    try {
      const second = await cli(["serve", "--socket", path]);
      assert.equal(second.code, 1);
      assert.match(second.stderr, new RegExp(`^Error: another matchlock serve is already running on ${path}$`, "m"));
      const s = new SocketSession(path);
      assert.equal((await s.call("exec", {}, 1)).error.message, "VM not created");
      s.socket.end();
    } finally {
      await first.stop();
    }
  });

  test("of two servers started at once on one socket, exactly one serves", T, async () => {
    const { home, env } = await freshHome();
    const path = join(home, "engine.sock");
    const results = await Promise.allSettled([startServer(path, env), startServer(path, env)]);
    const serving = results.filter((r) => r.status === "fulfilled");
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    assert.equal(serving.length, 1);
    assert.match(String(refused[0]?.reason), /another matchlock serve is already running on/);
    await serving[0]!.value.stop();
  });

  test("a stale socket (its server was killed) is replaced", T, async () => {
    const { home, env } = await freshHome();
    const path = join(home, "engine.sock");
    await staleSocket(path);
    // A client sees a clear error, not a hang.
    const client = new Client({ engineSocket: path });
    await assert.rejects(client.launch(new Sandbox("local/busybox:latest")), (err: unknown) =>
      err instanceof MatchlockError && /Cannot connect to the matchlock engine at .*: the engine that served there is not running any more \(a stale socket\)/.test(err.message));
    const server = await startServer(path, env);
    try {
      const s = new SocketSession(path);
      assert.equal((await s.call("exec", {}, 1)).error.message, "VM not created");
      s.socket.end();
    } finally {
      await server.stop();
    }
  });

  test("refuses paths it must not take over: a non-socket file, a directory others can write to", T, async () => {
    const { home } = await freshHome();
    const file = join(home, "not-a-socket");
    await writeFile(file, "precious");
    const r = await cli(["serve", "--socket", file]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^Error: .*not-a-socket exists and is not a socket: refusing to replace it$/m);
    const open = join(home, "open");
    await mkdir(open);
    await chmod(open, 0o777);
    const r2 = await cli(["serve", "--socket", join(open, "engine.sock")]);
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /^Error: .*open is writable by other users, who could replace the socket: use an owner-only directory$/m);
    // Sticky (like /tmp) is refused too: another user could bind the path before the server.
    await chmod(open, 0o1777);
    const r3 = await cli(["serve", "--socket", join(open, "engine.sock")]);
    assert.equal(r3.code, 1);
    assert.match(r3.stderr, /open is writable by other users/);
  });

  test("the SDK only talks to a socket owned by its user or root", T, async () => {
    const { home } = await freshHome();
    const file = join(home, "plain-file");
    await writeFile(file, "");
    await assert.rejects(new Client({ engineSocket: file, binaryPath: CLI }).start(), /at .*plain-file: that path is not a socket/);
    // A listening socket another user owns: the client refuses before connecting.
    const foreign = join(home, "foreign.sock");
    const impostor = createServer((c) => { connected = true; c.destroy(); });
    let connected = false;
    await new Promise<void>((resolve) => impostor.listen(foreign, resolve));
    try {
      await chown(foreign, 4242, 4242);
      await assert.rejects(new Client({ engineSocket: foreign, binaryPath: CLI }).start(), /the socket belongs to uid 4242, not to this user \(uid 0\) or root; refusing to send it anything/);
      assert.equal(connected, false, "nothing was sent to the impostor");
    } finally {
      impostor.close();
    }
  });

  test("the SDK says clearly when no server is there, and refuses useSudo with a socket", T, async () => {
    const { home } = await freshHome();
    const client = new Client({ engineSocket: join(home, "missing.sock"), binaryPath: CLI });
    await assert.rejects(client.launch(new Sandbox("local/busybox:latest")), (err: unknown) =>
      err instanceof MatchlockError && /no engine is serving there: start one with `matchlock serve`/.test(err.message));
    await client.close();
    assert.throws(() => new Client({ engineSocket: join(home, "x.sock"), useSudo: true }), /useSudo cannot be combined with an engine socket/);
    const saved = process.env.MATCHLOCK_ENGINE_SOCKET;
    process.env.MATCHLOCK_ENGINE_SOCKET = join(home, "from-env.sock");
    try {
      await assert.rejects(new Client({ binaryPath: CLI }).start(), /at .*from-env\.sock: no engine is serving there/);
    } finally {
      if (saved === undefined) delete process.env.MATCHLOCK_ENGINE_SOCKET;
      else process.env.MATCHLOCK_ENGINE_SOCKET = saved;
    }
  });
});
