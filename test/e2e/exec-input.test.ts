// Commands with input, end to end on $MATCHLOCK_BACKEND: exec_pipe and exec_tty on the wire as
// any SDK speaks them, and the SDK's execPipe, execInteractive and spawn() process handles.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Sandbox, type Client, type ProcessHandle } from "../../src/sdk/index.js";
import { BACKEND, BUSYBOX, newClient, setUpE2E } from "../helpers/e2e.js";
import { RawSession } from "../helpers/raw-rpc.js";

const b64 = (s: string | Buffer) => Buffer.from(s).toString("base64");
const text = (m: any) => Buffer.from(m.params.data, "base64").toString("utf8");

/** Everything a Readable gives until it ends. */
async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(Buffer.from(part as Buffer));
  return Buffer.concat(parts);
}

/** Resolves once `stream`'s output so far contains `marker`; returns that output. */
async function until(stream: NodeJS.ReadableStream, marker: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = "";
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      if (!seen.includes(marker)) return;
      stream.off("data", onData);
      stream.pause(); // at once: the rest stays for the next reader
      resolve(seen);
    };
    stream.on("data", onData);
    stream.once("error", reject);
  });
}

describe(`exec_pipe and exec_tty on the wire, ${BACKEND}`, () => {
  let s: RawSession;

  before(async () => {
    await setUpE2E();
    s = new RawSession();
    const r = await s.call("create", { image: BUSYBOX }, 1);
    assert.ok(r.result?.id, JSON.stringify(r));
  });
  after(() => {
    s.proc.kill("SIGKILL");
  });

  /** Reads messages until the response to `id`; returns the notifications before it and it. */
  async function finish(id: number): Promise<{ notes: any[]; reply: any }> {
    const notes: any[] = [];
    for (;;) {
      const m = await s.next();
      if (m.id === id && !m.method) return { notes, reply: m };
      notes.push(m);
    }
  }

  test("exec_pipe and exec_tty need an id", async () => {
    for (const method of ["exec_pipe", "exec_tty"]) {
      s.send({ jsonrpc: "2.0", method, params: { command: "true" } });
      assert.deepEqual(await s.next(), { jsonrpc: "2.0", error: { code: -32600, message: `${method} requires request id`, data: { kind: "invalid_argument" } } });
    }
  });

  test("exec_pipe: ready, then stdin in order (with or without ids, never answered), EOF, separate stderr", async () => {
    s.send({ jsonrpc: "2.0", method: "exec_pipe", params: { command: "cat; echo done >&2" }, id: 10 });
    const ready = await s.next();
    assert.equal(ready.method, "exec_pipe.ready");
    assert.equal(ready.params.id, 10);
    assert.ok(Number.isInteger(ready.params.pid) && ready.params.pid > 0);
    s.send({ jsonrpc: "2.0", method: "exec_pipe.stdin", params: { id: 10, data: b64("one ") }, id: 11 });
    s.send({ jsonrpc: "2.0", method: "exec_pipe.stdin", params: { id: 10, data: b64("two ") } });
    s.send({ jsonrpc: "2.0", method: "exec_pipe.stdin", params: { id: 10, data: b64("three\n") }, id: 12 });
    s.send({ jsonrpc: "2.0", method: "exec_pipe.stdin", params: { id: 999, data: b64("nobody's") }, id: 13 }); // unknown target: ignored
    s.send({ jsonrpc: "2.0", method: "exec_pipe.stdin_eof", params: { id: 10 }, id: 14 });
    const { notes, reply } = await finish(10);
    assert.equal(reply.result.exit_code, 0);
    assert.ok(Number.isInteger(reply.result.duration_ms));
    assert.ok(notes.every((m) => m.method && m.id === undefined), "input messages get no reply: " + JSON.stringify(notes));
    assert.equal(notes.filter((m) => m.method === "exec_pipe.stdout").map(text).join(""), "one two three\n");
    assert.equal(notes.filter((m) => m.method === "exec_pipe.stderr").map(text).join(""), "done\n");
    // The session goes on: the input messages above left nothing behind.
    assert.equal((await s.call("exec", { command: "echo still here" }, 15)).result.stdout, b64("still here\n"));
  });

  test("exec_tty: a terminal of the asked size (24 x 80 by default), stdin typed into it, resize, one output stream", async () => {
    s.send({ jsonrpc: "2.0", method: "exec_tty", params: { command: "tty; stty size; echo err >&2; read line; stty size; echo got $line" }, id: 20 });
    assert.equal((await s.next()).method, "exec_tty.ready");
    const before: any[] = [];
    while (!before.map(text).join("").includes("err")) before.push(await s.next()); // the first size was printed
    s.send({ jsonrpc: "2.0", method: "exec_tty.resize", params: { id: 20, rows: 50, cols: 132 }, id: 21 });
    s.send({ jsonrpc: "2.0", method: "exec_tty.stdin", params: { id: 20, data: b64("hi\n") } });
    const finished = await finish(20);
    const notes = [...before, ...finished.notes];
    const reply = finished.reply;
    assert.equal(reply.result.exit_code, 0);
    assert.ok(notes.every((m) => m.method === "exec_tty.stdout"), JSON.stringify(notes));
    const out = notes.map(text).join("");
    // The terminal echoes the typed line, possibly before the first outputs: compare without it.
    assert.equal(out.replace("hi\r\n", ""), "/dev/pts/0\r\n24 80\r\nerr\r\n50 132\r\ngot hi\r\n");

    s.send({ jsonrpc: "2.0", method: "exec_tty", params: { command: "stty size", rows: 33, cols: 101 }, id: 22 });
    const sized = await finish(22);
    assert.equal(sized.notes.filter((m) => m.method === "exec_tty.stdout").map(text).join(""), "33 101\r\n");
  });

  test("a command that stops reading its stdin: the rest is dropped, the session goes on", async () => {
    s.send({ jsonrpc: "2.0", method: "exec_pipe", params: { command: "head -c 5" }, id: 30 });
    assert.equal((await s.next()).method, "exec_pipe.ready");
    const chunk = b64(Buffer.alloc(512 * 1024, 0x61));
    for (let i = 0; i < 8; i++) s.send({ jsonrpc: "2.0", method: "exec_pipe.stdin", params: { id: 30, data: chunk } });
    const { notes, reply } = await finish(30);
    assert.equal(reply.result.exit_code, 0);
    assert.equal(notes.filter((m) => m.method === "exec_pipe.stdout").map(text).join(""), "aaaaa");
    assert.equal((await s.call("exec", { command: "echo ok" }, 31)).result.stdout, b64("ok\n"));
  });
});

describe(`execPipe, execInteractive and spawn on a ${BACKEND} sandbox`, () => {
  let client: Client;

  before(async () => {
    await setUpE2E();
    client = newClient();
    await client.create(new Sandbox(BUSYBOX).options());
  });
  after(async () => {
    await client.close();
    await client.remove();
  });

  test("execPipe: stdin from an iterable or a Readable, EOF at its end, at once without one", async () => {
    let out = "";
    const r = await client.execPipe("tr a-z A-Z", { stdin: ["hello ", Buffer.from("world\n")], stdout: (t) => (out += t) });
    assert.equal(r.exitCode, 0);
    assert.equal(out, "HELLO WORLD\n");
    let none = "";
    assert.equal((await client.execPipe("cat; echo eof", { stdout: (t) => (none += t) })).exitCode, 0);
    assert.equal(none, "eof\n");
    const handle = await client.spawn("cat");
    handle.stdin.end("abc");
    let piped = "";
    await client.execPipe("wc -c", { stdin: handle.stdout, stdout: (t) => (piped += t) });
    assert.equal(piped.trim(), "3"); // one sandbox command's stdout as another's stdin
  });

  test("a command with stdin or a terminal runs as confined and as the user asked for, as exec does", async () => {
    const caps = "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status";
    const viaExec = (await client.exec(caps)).stdout;
    let viaPipe = "";
    await client.execPipe(caps, { stdout: (t) => (viaPipe += t) });
    let viaTty = "";
    await client.execInteractive(caps, { stdout: (t) => (viaTty += t) });
    assert.equal(viaPipe, viaExec);
    assert.equal(viaTty.replaceAll("\r\n", "\n"), viaExec);
    let asNobody = "";
    await client.execPipe("id -u; cat", { user: "nobody", stdin: ["in"], stdout: (t) => (asNobody += t) });
    assert.equal(asNobody, "65534\nin");
    const p = await client.spawn("id -u; echo $HOME", { user: "1234:5", tty: true });
    assert.equal((await collect(p.stdout)).toString(), "1234\r\n/\r\n");
  });

  test("large binary stdin round-trips byte-exact", async () => {
    const data = randomBytes(24 * 1024 * 1024);
    const pieces = function* () {
      for (let off = 0; off < data.length; off += 100_000) yield data.subarray(off, off + 100_000);
    };
    let sum = "";
    const r = await client.execPipe("sha256sum", { stdin: pieces(), stdout: (t) => (sum += t) });
    assert.equal(r.exitCode, 0);
    assert.equal(sum.split(" ")[0], createHash("sha256").update(data).digest("hex"));

    const p = await client.spawn("cat");
    const echoed = collect(p.stdout);
    p.stdin.end(data.subarray(0, 4 * 1024 * 1024));
    assert.ok((await echoed).equals(data.subarray(0, 4 * 1024 * 1024)));
    assert.equal((await p.wait()).exitCode, 0);
  });

  test("stdin is flow-controlled: a command that does not read holds the writer at a bounded amount", async () => {
    const gate = `/tmp/gate-${randomBytes(4).toString("hex")}`;
    const p = await client.spawn(`while [ ! -e ${gate} ]; do sleep 0.05; done; sha256sum`);
    const sum = collect(p.stdout);
    const total = 48 * 1024 * 1024;
    const data = randomBytes(total);
    let accepted = 0;
    let stalled = false;
    const writer = (async () => {
      for (let off = 0; off < total; off += 64 * 1024) {
        const piece = data.subarray(off, off + 64 * 1024);
        if (!p.stdin.write(piece)) {
          stalled = true;
          await once(p.stdin, "drain");
        }
        accepted = off + piece.length;
      }
      p.stdin.end();
    })();
    // Wait until the writer has been held for a while; what it got rid of by then is bounded by the
    // windows on the way (SDK, engine, agent, pipe: ~6 MiB), far below what it has to write.
    let last = -1;
    for (let same = 0; same < 6; ) {
      await sleep(500);
      same = stalled && accepted === last ? same + 1 : 0;
      last = accepted;
    }
    assert.ok(accepted < 16 * 1024 * 1024, `the writer got ${accepted} bytes into a command that reads nothing`);
    await client.writeFile(gate, "");
    await writer;
    assert.equal((await sum).toString().split(" ")[0], createHash("sha256").update(data).digest("hex"));
    assert.equal((await p.wait()).exitCode, 0);
  });

  test("a terminal: tty, size, resize, and ctrl-C interrupts the command", async () => {
    let out = "";
    let resized!: () => void;
    const resizeSent = new Promise<void>((resolve) => (resized = resolve));
    async function* sizes() {
      yield [40, 100] as [number, number];
      resized(); // resumed right after the SDK sent it
    }
    async function* keys() {
      await resizeSent;
      yield "\n";
    }
    const r = await client.execInteractive("tty; read x; stty size", { rows: 30, cols: 90, stdin: keys(), resize: sizes(), stdout: (t) => (out += t) });
    assert.equal(r.exitCode, 0);
    // The typed newline is echoed, before or after the first line: compare without it.
    assert.match(out.replace(/^\r\n/m, ""), /^\/dev\/pts\/\d+\r\n40 100\r\n$/);

    const p = await client.spawn("echo ready; sleep 1000", { tty: { rows: 24, cols: 80 } });
    await until(p.stdout, "ready");
    p.stdout.resume();
    p.stdin.write("\x03");
    const exit = await p.wait();
    assert.equal(exit.signal, 2);
    assert.equal(exit.exitCode, 130);

    const q = await client.spawn("stty size; read x; stty size", { tty: true });
    const first = await until(q.stdout, "24 80\r\n");
    q.resize(55, 155);
    q.stdin.end("\n");
    const rest = (await collect(q.stdout)).toString();
    assert.equal((first + rest).replace(/^\r\n/m, ""), "24 80\r\n55 155\r\n");
  });

  test("several spawned commands at once, each with its own streams; kill", async () => {
    const procs: ProcessHandle[] = await Promise.all([0, 1, 2, 3].map((i) => client.spawn(`cat; echo end ${i} >&2`)));
    assert.equal(new Set(procs.map((p) => p.pid)).size, 4);
    const outs = procs.map((p) => collect(p.stdout));
    const errs = procs.map((p) => collect(p.stderr));
    const inputs = procs.map((_, i) => randomBytes(300_000 + i));
    procs.forEach((p, i) => p.stdin.write(inputs[i]!.subarray(0, 1000)));
    procs.forEach((p, i) => p.stdin.end(inputs[i]!.subarray(1000)));
    for (let i = 0; i < procs.length; i++) {
      assert.ok((await outs[i]!).equals(inputs[i]!), `stdout of command ${i}`);
      assert.equal((await errs[i]!).toString(), `end ${i}\n`);
      assert.equal((await procs[i]!.wait()).exitCode, 0);
    }

    const sleeper = await client.spawn("echo up; exec sleep 1000");
    await until(sleeper.stdout, "up");
    assert.equal(await sleeper.kill("SIGTERM"), true);
    const exit = await sleeper.wait();
    assert.equal(exit.signal, 15);
    assert.equal(exit.exitCode, 143);
    assert.equal(await sleeper.kill(), false, "a command that ended cannot be signalled");
    await assert.rejects(sleeper.kill("SIGNOPE" as NodeJS.Signals), /unknown signal/);
  });

  test("a spawn that cannot start rejects with the reason", async () => {
    await assert.rejects(client.spawn("true", { workingDir: "/no/such/dir" }), /chdir \/no\/such\/dir/);
  });
});
