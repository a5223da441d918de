// Wire-level behaviour of the SDK against a fake engine: framing, ids, routing, robustness.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { Client, MatchlockError, RPCError, Sandbox, TimeoutError, type ExecStreamOptions } from "../../src/sdk/index.js";
import { makeFakeBinary } from "../helpers/fake-binary.js";
import { eventually, requestsOf, withClient } from "../helpers/sdk-fixture.js";

const T = { timeout: 30_000 };

describe("SDK transport: framing and ids", () => {
  it("sends NDJSON JSON-RPC 2.0 with ids counting from 1 and no empty params", T, () =>
    withClient(async ({ fake, client }) => {
      const vmId = await client.launch(new Sandbox("alpine:latest").withCPUs(2).allowHost("pypi.org"));
      assert.equal(vmId, "vm-0123abcd");
      assert.equal(client.vmId, "vm-0123abcd");
      await client.exec("echo:hi");
      await client.exec("echo:there", { workingDir: "/tmp" });
      await client.close();
      assert.deepEqual(fake.requests(), [
        { jsonrpc: "2.0", method: "handshake", id: 1 },
        {
          jsonrpc: "2.0",
          method: "create",
          params: {
            image: "alpine:latest",
            resources: { cpus: 2 },
            network: { allowed_hosts: ["pypi.org"], block_private_ips: true },
            launch_entrypoint: true,
          },
          id: 2,
        },
        { jsonrpc: "2.0", method: "exec", params: { command: "echo:hi" }, id: 3 },
        { jsonrpc: "2.0", method: "exec", params: { command: "echo:there", working_dir: "/tmp" }, id: 4 },
        { jsonrpc: "2.0", method: "close", id: 5 },
      ]);
    }));

  it("decodes exec results: exit code, base64 UTF-8 with replacement, duration", T, () =>
    withClient(async ({ client }) => {
      const r = await client.exec("echo:héllo err:6f6f7073 out:ff41 exit:3");
      assert.equal(r.exitCode, 3);
      assert.equal(r.stdout, "héllo\n\ufffdA");
      assert.equal(r.stderr, "oops");
      assert.equal(typeof r.durationMs, "number");
      const cwd = await client.exec("cwd", { workingDir: "/work dir" });
      assert.equal(cwd.stdout, "/work dir\n");
    }));

  it("turns error responses into RPCErrors with the engine's code and text", T, () =>
    withClient(async ({ client }) => {
      await assert.rejects(client.exec("echo:x fail"), (err: unknown) => {
        assert.ok(err instanceof RPCError);
        assert.equal(err.code, RPCError.EXEC_FAILED);
        assert.ok(err.isExecError());
        assert.equal(err.rpcMessage, "exec error: chdir /nope: no such file or directory");
        assert.equal(err.message, "[-32001] exec error: chdir /nope: no such file or directory");
        return true;
      });
      await assert.rejects(client.create({ image: "fail-image" }), (err: unknown) => err instanceof RPCError && err.isVMError());
      await assert.rejects(client.readFile("/workspace/missing"), (err: unknown) => err instanceof RPCError && err.isFileError());
      assert.equal(client.vmId, undefined);
    }));

  it("reassembles a response split across writes, even inside a UTF-8 character", T, () =>
    withClient(async ({ client }) => {
      await assert.rejects(
        client.exec("split failmsg:ünïcødé-€-😀"),
        (err: unknown) => err instanceof RPCError && err.rpcMessage === "ünïcødé-€-😀",
      );
      assert.equal((await client.exec("split echo:whole")).stdout, "whole\n");
    }));

  it("handles a 12 MB response line", T, () =>
    withClient(async ({ client }) => {
      const r = await client.exec("big:9000000");
      assert.equal(r.stdout.length, 9_000_000);
      assert.ok(/^x+$/.test(r.stdout));
    }));

  it("skips unparseable lines, unknown ids and id-less replies", T, () =>
    withClient(async ({ client }) => {
      const r = await client.exec("garbage echo:survived");
      assert.equal(r.stdout, "survived\n");
      const s: string[] = [];
      await client.execStream("garbage echo:streamed", { stdout: (c) => s.push(c.toString()) });
      assert.equal(s.join(""), "streamed\n");
      assert.equal((await client.exec("echo:after")).stdout, "after\n");
    }));

  it("drains the engine's stderr so a chatty engine cannot block", T, () =>
    withClient(async ({ client }) => {
      // 2 MB is far beyond a pipe buffer: if nobody read stderr the engine would hang here.
      assert.equal((await client.exec("noise:2000000 echo:ok")).stdout, "ok\n");
    }));
});

describe("SDK transport: concurrency", () => {
  it("matches out-of-order responses to their calls", T, () =>
    withClient(async ({ client }) => {
      // The first call goes on only when the test creates its gate file, after the second call's
      // reply came (was: a 300 ms sleep, which a loaded machine can outlast before the second call).
      const dir = mkdtempSync(join(tmpdir(), "matchlock-sdk-order-"));
      try {
        const gate = join(dir, "go");
        const order: string[] = [];
        const slow = client.exec(`until:${gate} echo:slow`).then((r) => (order.push("slow"), r));
        const fast = client.exec("echo:fast").then((r) => (order.push("fast"), r));
        assert.equal((await fast).stdout, "fast\n");
        writeFileSync(gate, "");
        assert.equal((await slow).stdout, "slow\n");
        assert.deepEqual(order, ["fast", "slow"]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }));

  it("keeps 40 concurrent calls apart", T, () =>
    withClient(async ({ client }) => {
      const calls = Array.from({ length: 40 }, (_, i) =>
        client.exec(`sleep:${(i * 37) % 100} echo:call-${i} exit:${i % 7}`),
      );
      const results = await Promise.all(calls);
      results.forEach((r, i) => {
        assert.equal(r.stdout, `call-${i}\n`);
        assert.equal(r.exitCode, i % 7);
      });
    }));

  it("routes exec_stream notifications to the right concurrent call, before its result", T, () =>
    withClient(async ({ client }) => {
      const a = { out: [] as string[], err: [] as string[] };
      const b = { out: [] as string[], err: [] as string[] };
      const hex = (s: string) => Buffer.from(s).toString("hex");
      const streamA = client.execStream(
        `out:${hex("a1")} sleep:40 err:${hex("ae")} sleep:40 out:${hex("a2")} exit:4`,
        { stdout: (c) => a.out.push(c.toString()), stderr: (c) => a.err.push(c.toString()) },
      );
      const streamB = client.execStream(
        `sleep:20 out:${hex("b1")} sleep:40 out:${hex("b2")} err:${hex("be")}`,
        { stdout: (c) => b.out.push(c.toString()), stderr: (c) => b.err.push(c.toString()) },
      );
      const [ra, rb] = await Promise.all([
        streamA.then((r) => ({ r, snapshot: a.out.join("") + "|" + a.err.join("") })),
        streamB.then((r) => ({ r, snapshot: b.out.join("") + "|" + b.err.join("") })),
      ]);
      // Everything had arrived when each promise resolved.
      assert.equal(ra.snapshot, "a1a2|ae");
      assert.equal(rb.snapshot, "b1b2|be");
      assert.equal(ra.r.exitCode, 4);
      assert.equal(rb.r.exitCode, 0);
      assert.deepEqual(Object.keys(ra.r).sort(), ["durationMs", "exitCode"]);
    }));

  it("hands callbacks the bytes, characters split across chunks included", T, () =>
    withClient(async ({ client }) => {
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      // € = e2 82 ac, 😀 = f0 9f 98 80, each cut mid-character; a dangling e2 at the end.
      await client.execStream("out:e2 out:82ac out:41 err:f09f err:98 err:80 out:e2", {
        stdout: (c) => out.push(c),
        stderr: (c) => err.push(c),
      });
      assert.deepEqual(Buffer.concat(out), Buffer.from([0xe2, 0x82, 0xac, 0x41, 0xe2]));
      assert.equal(Buffer.concat(err).toString(), "😀");
    }));

  it("writes to Writable targets and waits for them to flush", T, () =>
    withClient(async ({ client }) => {
      const received: Buffer[] = [];
      const slowSink = new Writable({
        decodeStrings: false,
        write(chunk: Buffer, _enc, done) {
          setTimeout(() => (received.push(chunk), done()), 10);
        },
      });
      await client.execStream("echo:one echo:two echo:three", { stdout: slowSink });
      assert.ok(received.every((c) => Buffer.isBuffer(c)), "a Writable gets Buffers");
      assert.equal(Buffer.concat(received).toString(), "one\ntwo\nthree\n");
      // Compile-time check: the process's own streams are valid targets.
      const typed: ExecStreamOptions = { stdout: process.stdout, stderr: process.stderr };
      assert.equal(typeof typed.stdout, "object");
    }));

  it("gives a Writable the exact bytes: binary output and characters split across chunks", T, () =>
    withClient(async ({ client }) => {
      const received: Buffer[] = [];
      const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (received.push(chunk), done()) });
      await client.execStream("out:fffe0080 out:e2 out:82ac out:e2", { stdout: sink });
      assert.equal(Buffer.concat(received).toString("hex"), "fffe0080e282ace2");
    }));

  it("delivers output that came before an error, then rejects", T, () =>
    withClient(async ({ client }) => {
      const out: string[] = [];
      await assert.rejects(
        client.execStream("echo:partial fail", { stdout: (c) => out.push(c.toString()) }),
        (err: unknown) => err instanceof RPCError && err.isExecError(),
      );
      assert.equal(out.join(""), "partial\n");
    }));

  it("reports a failing output target after the command finished", T, () =>
    withClient(async ({ client }) => {
      await assert.rejects(
        client.execStream("echo:x echo:y", {
          stdout: () => {
            throw new Error("sink exploded");
          },
        }),
        (err: unknown) => err instanceof MatchlockError && /output target failed: Error: sink exploded/.test(err.message),
      );
      assert.equal((await client.exec("echo:still-fine")).stdout, "still-fine\n");
    }));

  it("passes event notifications to listeners; a throwing listener hurts nobody", T, () =>
    withClient(async ({ client }) => {
      const events: unknown[] = [];
      client.onEvent(() => {
        throw new Error("bad listener");
      });
      const off = client.onEvent((e) => events.push(e));
      await client.exec("event echo:x");
      assert.equal(events.length, 1);
      assert.deepEqual(events[0], {
        type: "network",
        timestamp: 1739091234,
        network: { method: "GET", host: "example.com", blocked: false },
      });
      off();
      await client.exec("event");
      assert.equal(events.length, 1);
    }));
});

describe("SDK transport: cancellation", () => {
  it("timeoutMs rejects with TimeoutError and sends cancel for that request id", T, () =>
    withClient(async ({ fake, client }) => {
      // The engine would answer after 60 s; the timeout ends the call at 150 ms. 20 s tells the two
      // apart on any machine (was 2 s against a 5 s answer).
      const started = Date.now();
      await assert.rejects(client.exec("sleep:60000 echo:late", { timeoutMs: 150 }), (err: unknown) => {
        assert.ok(err instanceof TimeoutError);
        assert.equal(err.code, RPCError.CANCELLED);
        return true;
      });
      assert.ok(Date.now() - started < 20_000, `rejected after ${Date.now() - started} ms`);
      // The engine's late -32003 reply for the cancelled id must not disturb later calls.
      assert.equal((await client.exec("echo:next")).stdout, "next\n");
      const exec = requestsOf(fake, "exec")[0]!;
      const cancel = requestsOf(fake, "cancel")[0]!;
      assert.deepEqual(cancel.params, { id: exec.id });
      assert.equal(cancel.id, (exec.id as number) + 1);
    }));

  it("an AbortSignal cancels a running call with RPCError CANCELLED", T, () =>
    withClient(async ({ fake, client }) => {
      const ac = new AbortController();
      const call = client.execStream("sleep:5000", { signal: ac.signal });
      await sleep(50);
      ac.abort(new Error("user gave up"));
      await assert.rejects(call, (err: unknown) => {
        assert.ok(err instanceof RPCError && !(err instanceof TimeoutError));
        assert.equal(err.code, RPCError.CANCELLED);
        assert.equal((err.cause as Error).message, "user gave up");
        return true;
      });
      await eventually(() => {
        const execId = requestsOf(fake, "exec_stream")[0]?.id;
        assert.deepEqual(requestsOf(fake, "cancel").map((r) => r.params), [{ id: execId }]);
      });
    }));

  it("an already-aborted signal rejects without sending anything", T, () =>
    withClient(async ({ fake, client }) => {
      await assert.rejects(client.exec("echo:x", { signal: AbortSignal.abort() }), (err: unknown) => err instanceof RPCError && err.isCancelled());
      await assert.rejects(client.exec("echo:x", { timeoutMs: -1 }), /timeoutMs must be a positive number/);
      await client.exec("echo:y");
      assert.deepEqual(requestsOf(fake, "exec").map((r) => r.params), [{ command: "echo:y" }]);
      assert.equal(requestsOf(fake, "exec")[0]!.id, 2, "no id was spent after the handshake's");
    }));
});

describe("SDK transport: process death", () => {
  it("rejects every pending call when the engine dies, with its stderr", T, () =>
    withClient(async ({ client }) => {
      const pending = client.exec("sleep:5000 echo:never");
      const stream = client.execStream("sleep:5000");
      await sleep(50);
      const dying = client.exec("die");
      for (const call of [pending, stream, dying]) {
        await assert.rejects(call, (err: unknown) => {
          assert.ok(err instanceof MatchlockError);
          assert.ok(!(err instanceof RPCError));
          assert.equal(err.message, "Matchlock process closed unexpectedly (exit code 3): fake engine: fatal crash");
          return true;
        });
      }
      await assert.rejects(client.exec("echo:x"), (err: unknown) => {
        assert.ok(err instanceof MatchlockError);
        assert.match(err.message, /^Matchlock process not running \(exit code 3\): fake engine: fatal crash$/);
        return true;
      });
      await client.close(); // nothing left to close: must not throw
    }));

  it("refuses VM calls before start(); launch() starts the engine itself", T, async () => {
    const fake = makeFakeBinary();
    const client = new Client({ binaryPath: fake.bin });
    try {
      await assert.rejects(client.exec("echo:x"), (err: unknown) => err instanceof MatchlockError && err.message === "Matchlock process not running");
      assert.deepEqual(fake.invocations(), []);
      assert.match(await client.launch(new Sandbox("alpine")), /^vm-/);
      assert.equal(fake.invocations().length, 1);
    } finally {
      await client.close();
      fake.cleanup();
    }
  });
});
