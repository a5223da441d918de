// Hostile and heavy input: a fuzzed JSON-RPC stream, thousands of requests in flight, a guest
// going for its agent channel, and twenty sandboxes at once.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import { randomBytes } from "node:crypto";
import { before, describe, test } from "node:test";
import { Sandbox, type Client } from "../../src/sdk/index.js";
import { BACKEND, BUSYBOX, CLI, eventually, leftovers, newClient, setUpE2E } from "../helpers/e2e.js";

/** Sends lines to a fresh `matchlock rpc` and collects every reply until it has `want` of them. */
async function session(lines: string[], want: number, timeoutMs = 60_000): Promise<{ replies: any[]; alive: boolean }> {
  const engine = spawn(process.execPath, [CLI, "rpc"], { stdio: ["pipe", "pipe", "ignore"] });
  const replies: any[] = [];
  let buffered = "";
  let exited = false;
  engine.on("exit", () => (exited = true));
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${replies.length}/${want} replies`)), timeoutMs);
    engine.stdout.on("data", (d: Buffer) => {
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        replies.push(JSON.parse(buffered.slice(0, nl))); // every reply must be valid JSON
        buffered = buffered.slice(nl + 1);
      }
      if (replies.length >= want) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  for (const l of lines) engine.stdin.write(l + "\n");
  await done;
  const alive = !exited;
  engine.stdin.end();
  return { replies, alive };
}

function randomValue(depth = 0): unknown {
  const pick = Math.floor(Math.random() * (depth > 2 ? 5 : 7));
  switch (pick) {
    case 0: return null;
    case 1: return Math.random() < 0.5 ? -Math.floor(Math.random() * 1e6) : Math.random() * 1e12;
    case 2: return randomBytes(Math.floor(Math.random() * 12)).toString("latin1");
    case 3: return Math.random() < 0.5;
    case 4: return "\u0000\ud800" + "x".repeat(Math.floor(Math.random() * 50));
    case 5: return Array.from({ length: 3 }, () => randomValue(depth + 1));
    default: return Object.fromEntries(Array.from({ length: 3 }, (_, i) => [`k${i}`, randomValue(depth + 1)]));
  }
}

const METHODS = ["create", "exec", "exec_stream", "write_file", "read_file", "list_files", "cancel", "nope", "", "__proto__", "constructor"];

describe("robustness", () => {
  let home: string;
  before(async () => {
    home = await setUpE2E();
  });

  test("a fuzzed request stream: one reply per non-empty line, no crash", async (t) => {
    const lines: string[] = [];
    for (let i = 0; i < 2000; i++) {
      const kind = i % 4;
      if (kind === 0) lines.push(randomBytes(1 + Math.floor(Math.random() * 200)).toString("latin1").replace(/\n/g, "") || "x");
      else if (kind === 1) lines.push(JSON.stringify(randomValue()));
      else {
        // Well-formed envelopes with random methods and params; create gets an image that does not exist.
        const method = METHODS[Math.floor(Math.random() * METHODS.length)]!;
        const params = method === "create" ? { image: "local/fuzz-missing:1", resources: randomValue() } : randomValue();
        lines.push(JSON.stringify({ jsonrpc: "2.0", method, params, id: i, extra: randomValue() }));
      }
    }
    // Blank means JSON's own whitespace only (space, tab, CR), as the engine counts it: trim()
    // would also drop \v, \f and U+00A0, lines the engine rightly answers with a parse error.
    const nonEmpty = lines.filter((l) => /[^ \t\r]/.test(l)).length;
    const { replies, alive } = await session(lines, nonEmpty);
    assert.equal(alive, true);
    assert.equal(replies.length, nonEmpty);
    for (const r of replies) {
      assert.equal(r.jsonrpc, "2.0");
      assert.ok(("result" in r) !== ("error" in r), JSON.stringify(r));
      if (r.error) assert.equal(typeof r.error.message, "string");
    }
    const internal = replies.filter((r) => r.error?.code === -32603);
    assert.deepEqual(internal, [], "no request may hit an internal error");
    t.diagnostic(`fuzz: ${lines.length} lines sent, ${replies.length} replies, 0 crashes, 0 internal errors`);
  });

  test("10,000 requests in flight all get their reply", async (t) => {
    const lines = Array.from({ length: 10_000 }, (_, i) => JSON.stringify({ jsonrpc: "2.0", method: "exec", params: { command: "true" }, id: i + 1 }));
    const { replies, alive } = await session(lines, 10_000);
    assert.equal(alive, true);
    assert.deepEqual(new Set(replies.map((r) => r.id)).size, 10_000);
    assert.ok(replies.every((r) => r.error?.message === "VM not created"));
    t.diagnostic("10,000 requests in flight: 10,000 replies");
  });

  test("a client that stops reading slows the sandbox down instead of filling the engine's memory", async (t) => {
    const engine = spawn(process.execPath, [CLI, "rpc"], { stdio: ["pipe", "pipe", "ignore"] });
    try {
      const created = new Promise<void>((resolve) => engine.stdout.once("data", () => resolve()));
      engine.stdin.write(JSON.stringify({ jsonrpc: "2.0", method: "create", params: { image: BUSYBOX }, id: 1 }) + "\n");
      await created;
      engine.stdout.pause(); // from here on, nobody reads the engine's output
      engine.stdin.write(JSON.stringify({ jsonrpc: "2.0", method: "exec_stream", params: { command: "cat /dev/zero" }, id: 2 }) + "\n");
      const rss = async () => Number((await promisify(execFile)("ps", ["-o", "rss=", "-p", String(engine.pid)])).stdout) / 1024;
      await new Promise((r) => setTimeout(r, 1500));
      const before = await rss();
      await new Promise((r) => setTimeout(r, 3000));
      const after = await rss();
      t.diagnostic(`engine RSS ${before.toFixed(0)} MiB -> ${after.toFixed(0)} MiB while the client did not read`);
      assert.ok(after - before < 50, `RSS grew from ${before} to ${after} MiB`); // unthrottled, it grows ~65 MB/s
    } finally {
      engine.kill("SIGKILL");
    }
  });

  test("1,000 concurrent file reads on one sandbox", async () => {
    await using client = newClient();
    await client.launch(new Sandbox(BUSYBOX));
    await client.writeFile("/tmp/small", "payload");
    const results = await Promise.all(Array.from({ length: 1000 }, () => client.readFile("/tmp/small")));
    assert.ok(results.every((b) => b.toString() === "payload"));
  });

  test("the guest cannot reach its agent channel, even as root", async () => {
    await using client = newClient();
    await client.launch(new Sandbox(BUSYBOX));
    // The channel is the agent's stdio; gVisor does not let the guest reopen host descriptors.
    const r = await client.exec("printf 'not a frame' > /proc/1/fd/1; printf 'x' > /proc/1/fd/0; echo still-here");
    assert.match(r.stderr, /can't create \/proc\/1\/fd\/1/);
    assert.equal(r.stdout, "still-here\n");
    assert.equal((await client.exec("echo again")).stdout, "again\n");
  });

  test("a guest that kills its own agent: a clear error and nothing left, or the agent survives", async () => {
    const client = newClient();
    const id = await client.launch(new Sandbox(BUSYBOX));
    try {
      if (BACKEND === "microvm") {
        // A Linux guest kernel does not let PID 1 be killed from inside: the agent lives on.
        assert.equal((await client.exec("kill -9 1; echo survived")).stdout, "survived\n");
        assert.equal((await client.exec("echo still")).stdout, "still\n");
      } else {
        // gVisor lets root kill PID 1: the sandbox is gone, and every call says so.
        await assert.rejects(client.exec("kill -9 1; sleep 5"), /sandbox lost/);
        await assert.rejects(client.exec("true"), /is lost/);
      }
    } finally {
      await client.close();
      await client.remove();
    }
    assert.deepEqual(await eventually(() => leftovers(id, home)), []);
  });

  // Twenty on gVisor; under TCG emulation each micro-VM boot takes a core for ~2.5 s, so four.
  const many = BACKEND === "microvm" ? 4 : 20;
  test(`${many} sandboxes at once from one process, no crosstalk`, async () => {
    const clients: Client[] = Array.from({ length: many }, () => newClient());
    try {
      const ids = await Promise.all(clients.map((c) => c.launch(new Sandbox(BUSYBOX).withMemory(128))));
      assert.equal(new Set(ids).size, many);
      await Promise.all(clients.map((c, i) => c.writeFile("/workspace/me", `client-${i}`)));
      const seen = await Promise.all(clients.map((c) => c.exec("cat /workspace/me; echo; hostname")));
      seen.forEach((r, i) => assert.equal(r.stdout, `client-${i}\n${ids[i]}\n`));
    } finally {
      await Promise.all(clients.map(async (c) => { await c.close(); await c.remove(); }));
    }
  });
});
