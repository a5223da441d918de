// `matchlock rpc` as the SDK starts it: the bundled engine (dist/bundle/rpc, made by
// `npm run build`) serves requests, and MATCHLOCK_TRACE_STARTUP=1 reports its start-up steps.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { CLI, ROOT } from "../helpers/e2e.js";

function rpc(input: string, env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, "rpc"], { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

test("the build bundles the engine, and `matchlock rpc` serves from it", async () => {
  assert.ok(existsSync(join(ROOT, "dist", "bundle", "rpc", "rpc.js")), "dist/bundle/rpc/rpc.js is missing: run npm run build");
  const home = await mkdtemp(join(tmpdir(), "matchlock-entry-"));
  const r = await rpc('{"jsonrpc":"2.0","method":"no_such_method","id":7}\n', { MATCHLOCK_HOME: home });
  assert.equal(r.code, 0, r.stderr);
  const reply = JSON.parse(r.stdout.trim()) as { id: number; error: { code: number; message: string } };
  assert.equal(reply.id, 7);
  assert.equal(reply.error.code, -32601);
  assert.doesNotMatch(r.stderr, /startup/, "no start-up trace unless asked for");
});

test("MATCHLOCK_TRACE_STARTUP=1 prints the engine's start-up steps with their times", async () => {
  const home = await mkdtemp(join(tmpdir(), "matchlock-entry-"));
  const r = await rpc('{"jsonrpc":"2.0","method":"no_such_method","id":1}\n', { MATCHLOCK_HOME: home, MATCHLOCK_TRACE_STARTUP: "1" });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^matchlock: startup \+\d+\.\d ms modules loaded$/m);
  assert.match(r.stderr, /^matchlock: startup \+\d+\.\d ms request no_such_method$/m);
});

test("`matchlock rpc --help` still goes through the full command line", async () => {
  const r = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, "rpc", "--help"], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("close", () => resolve(out));
  });
  assert.match(r, /Usage: matchlock rpc/);
});
