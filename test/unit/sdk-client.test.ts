// Client lifecycle and file operations against a fake engine: start/close/remove, binary
// resolution, local validation.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Client, GoFileMode, MatchlockError, RPCError, Sandbox } from "../../src/sdk/index.js";
import { PROTOCOL_VERSION } from "../../src/protocol/handshake.js";
import { OWN_ENGINE, engineCommand, rmCommand, rpcCommand } from "../../src/sdk/engine-command.js";
import { isAlive, makeFakeBinary } from "../helpers/fake-binary.js";
import { eventually, requestsOf, withClient } from "../helpers/sdk-fixture.js";

const T = { timeout: 30_000 };

describe("SDK client: files", () => {
  it("writeFile sends base64 content and a decimal mode (default 0o644)", T, () =>
    withClient(async ({ fake, client }) => {
      await client.writeFile("/workspace/hello.txt", "Hello, wörld!");
      await client.writeFile("/workspace/bin/run.sh", new Uint8Array([0x23, 0x21, 0x00, 0xff]), { mode: 0o755 });
      // A view into a larger buffer must send only its own bytes.
      const backing = Buffer.from("xxABCxx");
      await client.writeFile("/workspace/view", backing.subarray(2, 5));
      assert.deepEqual(requestsOf(fake, "write_file").map((r) => r.params), [
        { path: "/workspace/hello.txt", content: Buffer.from("Hello, wörld!").toString("base64"), mode: 420 },
        { path: "/workspace/bin/run.sh", content: "IyEA/w==", mode: 493 },
        { path: "/workspace/view", content: "QUJD", mode: 420 },
      ]);
      await assert.rejects(client.writeFile("/x", "y", { mode: -1 }), /mode must be a uint32/);
      await assert.rejects(client.writeFile("", "y"), /path is required/);
    }));

  it("upstream SDK's names: writeFileMode, execWithDir, execStreamWithDir", T, () =>
    withClient(async ({ fake, client }) => {
      await client.writeFileMode("/workspace/run.sh", "x", 0o700);
      assert.deepEqual(requestsOf(fake, "write_file").map((r) => r.params), [{ path: "/workspace/run.sh", content: "eA==", mode: 448 }]);
      await client.execWithDir("echo:a", "/tmp");
      await client.execWithDir("echo:b");
      const chunks: string[] = [];
      await client.execStreamWithDir("echo:c", "/srv", (t) => chunks.push(t.toString()));
      assert.deepEqual([...requestsOf(fake, "exec"), ...requestsOf(fake, "exec_stream")].map((r) => r.params), [
        { command: "echo:a", working_dir: "/tmp" },
        { command: "echo:b" },
        { command: "echo:c", working_dir: "/srv" },
      ]);
      assert.equal(chunks.join(""), "c\n");
    }));

  it("readFile returns the exact bytes as a Buffer (3 MB binary round trip)", T, () =>
    withClient(async ({ client }) => {
      const data = randomBytes(3 * 1024 * 1024);
      await client.writeFile("/workspace/blob", data);
      const back = await client.readFile("/workspace/blob");
      assert.ok(Buffer.isBuffer(back));
      assert.ok(back.equals(data));
      await client.writeFile("/workspace/empty", "");
      assert.equal((await client.readFile("/workspace/empty")).length, 0);
    }));

  it("listFiles maps entries to FileInfo with wire modes", T, () =>
    withClient(async ({ client }) => {
      await client.writeFile("/workspace/a.txt", "1");
      await client.writeFile("/workspace/sub/b.txt", "22", { mode: 0o600 });
      const files = (await client.listFiles("/workspace")).sort((x, y) => x.name.localeCompare(y.name));
      assert.deepEqual(files, [
        { name: "a.txt", size: 1, mode: 0o644, isDir: false },
        { name: "sub", size: 0, mode: GoFileMode.DIR + 0o755, isDir: true },
      ]);
      assert.deepEqual(await client.listFiles("/workspace/nothing"), []);
    }));
});

describe("SDK client: create", () => {
  it("validates CreateOptions locally before sending anything", T, () =>
    withClient(async ({ fake, client }) => {
      await assert.rejects(client.create({ image: "" }), (err: unknown) => {
        assert.ok(err instanceof MatchlockError && !(err instanceof RPCError));
        assert.equal(err.message, "image is required (e.g., alpine:latest)");
        return true;
      });
      await assert.rejects(client.create({ image: "a", cpus: -2 }), /cpus must be a number of CPUs/);
      await client.exec("echo:x");
      assert.deepEqual(requestsOf(fake, "create"), []);
    }));

  it("sends hand-written CreateOptions with the same wire shape as the builder", T, () =>
    withClient(async ({ fake, client }) => {
      await client.create({
        image: "python:3.12-alpine",
        memoryMb: 256,
        secrets: [{ name: "K", value: "v", hosts: ["h.com"] }],
        mounts: { "/workspace": { type: "memory" } },
        workspace: "/workspace",
      });
      assert.deepEqual(requestsOf(fake, "create")[0]!.params, {
        image: "python:3.12-alpine",
        resources: { memory_mb: 256 },
        network: { allowed_hosts: [], block_private_ips: true, secrets: { K: { value: "v", hosts: ["h.com"] } } },
        vfs: { mounts: { "/workspace": { type: "memory" } }, workspace: "/workspace" },
      });
    }));
});

describe("SDK client: lifecycle", () => {
  it("start() is idempotent: one engine process", T, () =>
    withClient(async ({ fake, client }) => {
      await Promise.all([client.start(), client.start()]);
      await client.start();
      await client.exec("echo:x");
      assert.deepEqual(fake.invocations(), [["rpc"]]);
    }));

  it("close() is idempotent, sends one close, and leaves no process behind", T, async () => {
    const fake = makeFakeBinary();
    try {
      const client = new Client({ binaryPath: fake.bin });
      await client.start();
      await client.launch(new Sandbox("alpine:latest"));
      await eventually(() => assert.ok(fake.pid() > 0));
      const pid = fake.pid();
      assert.ok(isAlive(pid));
      const first = client.close();
      assert.equal(client.close(), first);
      await first;
      await client.close();
      assert.equal(isAlive(pid), false);
      assert.deepEqual(requestsOf(fake, "close"), [{ jsonrpc: "2.0", method: "close", id: 3 }]);
      assert.equal(client.vmId, "vm-0123abcd", "the id is kept for remove()");
      await assert.rejects(client.exec("echo:x"), /^MatchlockError: Matchlock process not running$/);
      await assert.rejects(client.start(), /Client is closed/);
    } finally {
      fake.cleanup();
    }
  });

  it("close(timeout) sends timeout_seconds", T, () =>
    withClient(async ({ fake, client }) => {
      await client.close(2.5);
      assert.deepEqual(requestsOf(fake, "close")[0]!.params, { timeout_seconds: 2.5 });
      await assert.rejects(new Client().close(-1), /close timeout must be >= 0/);
    }));

  it("close() SIGKILLs an engine that ignores stdin EOF", T, async () => {
    const fake = makeFakeBinary({ FAKE_IGNORE_EOF: "1" });
    try {
      const client = new Client({ binaryPath: fake.bin });
      await client.start();
      await client.exec("echo:x");
      const pid = fake.pid();
      const started = Date.now();
      await client.close();
      assert.equal(isAlive(pid), false);
      // By design close() gives the engine 3 s to exit before the SIGKILL; a close that never
      // kills never returns. 30 s leaves a loaded machine room (it took 6.4 s against 8 s once).
      assert.ok(Date.now() - started < 30_000, `closed after ${Date.now() - started} ms`);
    } finally {
      fake.cleanup();
    }
  });

  it("close() fails calls still pending with 'Matchlock client closed'", T, async () => {
    const fake = makeFakeBinary({ FAKE_IGNORE_EOF: "1" });
    try {
      const client = new Client({ binaryPath: fake.bin });
      await client.start();
      // The fake answers close at once (unlike a real engine, which waits for in-flight calls).
      const pending = client.exec("sleep:20000");
      await client.close();
      await assert.rejects(pending, /^MatchlockError: Matchlock client closed$/);
    } finally {
      fake.cleanup();
    }
  });

  it("close() on a never-started client is a no-op", T, async () => {
    const fake = makeFakeBinary();
    try {
      await new Client({ binaryPath: fake.bin }).close();
      assert.deepEqual(fake.invocations(), []);
    } finally {
      fake.cleanup();
    }
  });

  it("await using closes the client", T, async () => {
    const fake = makeFakeBinary();
    try {
      {
        await using client = new Client({ binaryPath: fake.bin });
        await client.start();
        await client.exec("echo:x");
      }
      assert.equal(isAlive(fake.pid()), false);
      assert.equal(requestsOf(fake, "close").length, 1);
    } finally {
      fake.cleanup();
    }
  });
});

describe("SDK client: disposal", () => {
  it("await using removes the sandbox it made; keepOnDispose keeps it", T, async () => {
    for (const keepOnDispose of [false, true]) {
      const fake = makeFakeBinary();
      try {
        {
          await using client = new Client({ binaryPath: fake.bin, keepOnDispose });
          await client.launch(new Sandbox("img"));
        }
        const removals = fake.invocations().filter((argv) => argv[0] === "rm");
        assert.deepEqual(removals, keepOnDispose ? [] : [["rm", "vm-0123abcd"]]);
        assert.equal(requestsOf(fake, "close").length, 1);
      } finally {
        fake.cleanup();
      }
    }
  });
});

describe("SDK client: version handshake", () => {
  it("asks first, and drives an engine that does not know the handshake in seed mode", T, () =>
    withClient(async ({ fake, client }) => {
      assert.equal((await client.exec("echo:seed")).stdout, "seed\n");
      assert.deepEqual(fake.requests().slice(0, 2).map((r) => r.method), ["handshake", "exec"]);
    }));

  it("accepts an engine of the same protocol", T, async () => {
    const fake = makeFakeBinary({ FAKE_HANDSHAKE: JSON.stringify({ engine: "matchlock", version: "9.9.9", protocol: PROTOCOL_VERSION }) });
    try {
      await using client = new Client({ binaryPath: fake.bin });
      await client.start();
      assert.equal((await client.exec("echo:same")).stdout, "same\n");
    } finally {
      fake.cleanup();
    }
  });

  it("refuses an engine of another protocol, saying which", T, async () => {
    const fake = makeFakeBinary({ FAKE_HANDSHAKE: JSON.stringify({ engine: "matchlock", version: "0.0.1", protocol: PROTOCOL_VERSION + 1 }) });
    try {
      const client = new Client({ binaryPath: fake.bin });
      await assert.rejects(client.launch(new Sandbox("img")), (err: unknown) => {
        assert.ok(err instanceof MatchlockError);
        assert.match(err.message, new RegExp(`matchlock 0\\.0\\.1\\) speaks protocol ${PROTOCOL_VERSION + 1}, but this SDK speaks protocol ${PROTOCOL_VERSION}`));
        return true;
      });
      assert.deepEqual(requestsOf(fake, "create"), [], "nothing is sent to a mismatched engine");
      await client.close();
    } finally {
      fake.cleanup();
    }
  });

  it("an engine that exits at once is reported with its exit status and stderr, not EPIPE", T, async () => {
    const fake = makeFakeBinary({ FAKE_EXIT_AT_START: "flag provided but not defined: -foreign" });
    try {
      const client = new Client({ binaryPath: fake.bin });
      await assert.rejects(client.launch(new Sandbox("img")), (err: unknown) => {
        assert.ok(err instanceof MatchlockError);
        assert.match(err.message, /exit code 3\): flag provided but not defined: -foreign/);
        assert.doesNotMatch(err.message, /EPIPE/);
        return true;
      });
      await client.close();
    } finally {
      fake.cleanup();
    }
  });
});

describe("SDK client: remove", () => {
  it("runs `<bin> rm <vmId>` and then forgets the id", T, async () => {
    const fake = makeFakeBinary();
    try {
      const client = new Client({ binaryPath: fake.bin });
      await client.start();
      await client.launch(new Sandbox("alpine:latest"));
      await client.close();
      await client.remove();
      assert.deepEqual(fake.invocations(), [["rpc"], ["rm", "vm-0123abcd"]]);
      assert.equal(client.vmId, undefined);
      await client.remove(); // nothing left to remove
      assert.equal(fake.invocations().length, 2);
    } finally {
      fake.cleanup();
    }
  });

  it("is a no-op without a VM id", T, async () => {
    const fake = makeFakeBinary();
    try {
      await new Client({ binaryPath: fake.bin }).remove();
      assert.deepEqual(fake.invocations(), []);
    } finally {
      fake.cleanup();
    }
  });

  it("rejects with the CLI's stderr on failure", T, async () => {
    const fake = makeFakeBinary({ FAKE_RM_FAIL: "1" });
    try {
      const client = new Client({ binaryPath: fake.bin });
      await client.start();
      await client.launch(new Sandbox("alpine:latest"));
      await assert.rejects(client.remove(), (err: unknown) => {
        assert.ok(err instanceof MatchlockError);
        assert.equal(
          err.message,
          `${fake.bin} rm vm-0123abcd failed (exit code 1): Error: cannot remove running VM vm-0123abcd, kill it first`,
        );
        return true;
      });
      assert.equal(client.vmId, "vm-0123abcd");
      await client.close();
    } finally {
      fake.cleanup();
    }
  });
});

describe("SDK client: which binary runs", () => {
  it("resolves Config.binaryPath, then its own package's engine, then a non-empty MATCHLOCK_BIN, then `matchlock`", () => {
    const own = "/pkg/dist/src/cli/main.js";
    assert.deepEqual(engineCommand({ binaryPath: "/opt/ml" }, { MATCHLOCK_BIN: "/env/ml" }, own), ["/opt/ml"]);
    assert.deepEqual(engineCommand({}, { MATCHLOCK_BIN: "/env/ml" }, own), [process.execPath, own]);
    assert.deepEqual(engineCommand({ binaryPath: "" }, { MATCHLOCK_BIN: "/env/ml" }, own), [process.execPath, own]);
    assert.deepEqual(engineCommand({}, { MATCHLOCK_BIN: "/env/ml" }, null), ["/env/ml"]);
    assert.deepEqual(engineCommand({}, { MATCHLOCK_BIN: "" }, null), ["matchlock"]);
    assert.deepEqual(engineCommand({}, {}, null), ["matchlock"]);
    assert.deepEqual(engineCommand({}, {}), [process.execPath, OWN_ENGINE], "the built package has its engine");
  });

  it("uses sudo for rpc and rm alike when asked", () => {
    assert.deepEqual(rpcCommand(["/b/ml"]), ["/b/ml", "rpc"]);
    assert.deepEqual(rpcCommand(["/b/ml"], true), ["sudo", "/b/ml", "rpc"]);
    assert.deepEqual(rmCommand("vm-1", ["node", "/b/main.js"], true), ["sudo", "node", "/b/main.js", "rm", "vm-1"]);
    assert.deepEqual(rmCommand("vm-1", ["/b/ml"]), ["/b/ml", "rm", "vm-1"]);
  });

  it("runs its own package's engine, not the one MATCHLOCK_BIN names", T, async () => {
    const fake = makeFakeBinary();
    const saved = { bin: process.env.MATCHLOCK_BIN, home: process.env.MATCHLOCK_HOME, idle: process.env.MATCHLOCK_SHARED_ENGINE_IDLE };
    process.env.MATCHLOCK_BIN = fake.bin;
    process.env.MATCHLOCK_HOME = mkdtempSync(join(tmpdir(), "matchlock-own-engine-"));
    process.env.MATCHLOCK_SHARED_ENGINE_IDLE = "1"; // the shared engine leaves right after the test
    try {
      for (const client of [new Client(), new Client({ sharedEngine: false })]) {
        await client.start(); // the real engine answers the handshake
        await client.close();
      }
      assert.deepEqual(fake.invocations(), []);
    } finally {
      for (const [key, value] of [["MATCHLOCK_BIN", saved.bin], ["MATCHLOCK_HOME", saved.home], ["MATCHLOCK_SHARED_ENGINE_IDLE", saved.idle]] as const) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
      fake.cleanup();
    }
  });

  it("explains a missing binary", T, async () => {
    const client = new Client({ binaryPath: "/nonexistent/matchlock-bin" });
    await assert.rejects(client.start(), (err: unknown) => {
      assert.ok(err instanceof MatchlockError);
      assert.match(err.message, /\/nonexistent\/matchlock-bin not found/);
      assert.match(err.message, /MATCHLOCK_BIN/);
      assert.match(err.message, /Config\.binaryPath/);
      return true;
    });
    await assert.rejects(client.exec("x"), /Matchlock process not running/);
    await client.close();
  });
});
