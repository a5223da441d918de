// The engine's one way to run a short host command (src/engine/host-commands.ts): its input,
// its time limit, its output cap (stdout over it kills the command, stderr is cut), a program
// that is not there; and run()'s errors for the network tools.
// Plus the one size formatter.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { formatBytes } from "../../src/engine/byte-size.js";
import { HostCommandError, run, runCommand } from "../../src/engine/host-commands.js";

describe("runCommand", () => {
  test("feeds its input, returns status, stdout and stderr", async () => {
    const r = await runCommand("sh", ["-c", "cat; echo oops >&2; exit 3"], { input: "hello\n" });
    assert.deepEqual(r, { status: 3, stdout: "hello\n", stderr: "oops\n", timedOut: false, outputTooLong: false });
  });

  test("without input, stdin is closed at once (a reader does not wait)", async () => {
    const r = await runCommand("cat", []);
    assert.equal(r.status, 0);
    assert.equal(r.stdout, "");
  });

  test("timeoutMs: killed, even when a grandchild keeps the pipes open", async () => {
    const started = Date.now();
    const r = await runCommand("sh", ["-c", "sleep 30 & sleep 30"], { timeoutMs: 200 });
    assert.equal(r.timedOut, true);
    assert.equal(r.status, null);
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
  });

  test("maxOutputBytes: stdout beyond it kills the command, with what came before kept within the cap", async () => {
    const r = await runCommand("yes", ["0123456789"], { maxOutputBytes: 1000 });
    assert.equal(r.outputTooLong, true);
    assert.ok(r.stdout.length <= 1000, `${r.stdout.length} bytes kept`);
    assert.equal(r.timedOut, false);
  });

  test("maxOutputBytes: stderr beyond it is cut, and the command runs to its end", async () => {
    const r = await runCommand("sh", ["-c", "head -c 5000 /dev/zero | tr '\\0' x >&2; echo done"], { maxOutputBytes: 100 });
    assert.equal(r.status, 0);
    assert.equal(r.outputTooLong, false);
    assert.equal(r.stdout, "done\n");
    assert.equal(r.stderr, "x".repeat(100));
  });

  test("a program that is not installed: spawnError ENOENT, no exception", async () => {
    const r = await runCommand("matchlock-test-no-such-program", []);
    assert.equal(r.spawnError?.code, "ENOENT");
    assert.equal(r.status, null);
  });
});

describe("run (network tools)", () => {
  test("stdout on success; HostCommandError naming the command, its status and stderr on failure", async () => {
    assert.equal(await run("sh", ["-c", "cat"], "in\n"), "in\n");
    await assert.rejects(run("sh", ["-c", "echo bad thing >&2; exit 2"]),
      (e: unknown) => e instanceof HostCommandError && e.message === "sh -c echo bad thing >&2; exit 2 failed (status 2): bad thing");
    await assert.rejects(run("matchlock-test-no-such-program", []),
      (e: unknown) => e instanceof HostCommandError && /could not run: .*ENOENT.*\(install iproute2 and nftables\)$/.test(e.message));
  });
});

describe("formatBytes", () => {
  test("bytes below 1 MiB, else MiB to one decimal", () => {
    assert.equal(formatBytes(0), "0 bytes");
    assert.equal(formatBytes(1024), "1024 bytes");
    assert.equal(formatBytes(2 ** 20), "1 MiB");
    assert.equal(formatBytes(1.5 * 2 ** 20), "1.5 MiB");
    assert.equal(formatBytes(128 * 2 ** 20), "128 MiB");
    assert.equal(formatBytes(64 * 2 ** 30), "65536 MiB");
  });
});
