// Runs the real static agent binary on the host (it is just a stdio program) and drives it
// frame by frame. Needs `make -C guest/agent` and root (for the uid/gid switch).
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { lstat, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { FrameType, HEADER_BYTES, MAX_PAYLOAD, READ_CHUNK, encodeFrame, encodeStrings, type Frame, type FrameTypeCode } from "../../src/protocol/agent-frames.js";
import { closeSync, constants as fsConstants, existsSync, openSync, readFileSync, writeSync } from "node:fs";
import { AGENT_BINARY, AgentDriver, type AgentOptions, type OpResult } from "../helpers/agent-driver.js";

/** A broken agent must fail a test, not hang the run. */
const LIMIT = { timeout: 90_000 }; // a hang guard, generous: a loaded 2-core host runs the 6,000-file listing in ~25 s
after(() => AgentDriver.killAll());
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** Runs `body` against a fresh agent and temp dir; checks no frame arrived outside an op and a clean exit. */
async function withAgent(body: (agent: AgentDriver, dir: string) => Promise<void>, opts: AgentOptions = {}): Promise<void> {
  assert.ok(existsSync(AGENT_BINARY), `${AGENT_BINARY} missing: run make -C guest/agent`);
  const dir = await mkdtemp(join(tmpdir(), "matchlock-agent-test-"));
  const agent = await AgentDriver.start(opts);
  try {
    await body(agent, dir);
    // The agent answers in order, so after this PING every frame of earlier ops has arrived.
    assert.equal((await agent.ping()).ok, true);
    assert.deepEqual(agent.stray.map((f) => `type 0x${f.type.toString(16)} id ${f.id}`), []);
    assert.deepEqual(await agent.stop(), { code: 0, signal: null });
  } finally {
    agent.proc.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  }
}

/** Dead means gone or a zombie: on the host, orphans are reaped by whatever our PID 1 is. */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** A signalled process is gone within milliseconds; the long deadline is for a loaded machine. */
async function waitDead(pid: number, ms = 15_000): Promise<void> {
  for (const t0 = performance.now(); isAlive(pid); await sleep(10)) {
    assert.ok(performance.now() - t0 < ms, `pid ${pid} still alive after ${ms} ms`);
  }
}

/**
 * Collects the output frames of execs and lets a test wait until some output has arrived: the
 * tests below let a command go on only once its earlier output is seen, so that what they check
 * does not depend on how the host schedules processes. A wait fails (instead of hanging) after
 * `ms`: an agent that holds output back never sends it, however long one waits.
 */
class OutputLog {
  /** [exec key, text] of every STDOUT/STDERR frame, in arrival order. */
  readonly frames: Array<[string, string]> = [];
  private wake: () => void = () => {};

  onFrame(key: string): (f: Frame) => void {
    return (f) => {
      if (f.type !== FrameType.STDOUT && f.type !== FrameType.STDERR) return;
      this.frames.push([key, f.payload.toString()]);
      this.wake();
    };
  }

  text(key: string): string {
    return this.frames.filter(([k]) => k === key).map(([, t]) => t).join("");
  }

  async until(what: string, done: () => boolean, ms = 30_000): Promise<void> {
    const deadline = performance.now() + ms;
    while (!done()) {
      const left = deadline - performance.now();
      assert.ok(left > 0, `${what}: not there after ${ms} ms; frames so far: ${JSON.stringify(this.frames)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => { clearTimeout(timer); resolve(); };
      });
    }
  }
}

/**
 * A named pipe in `dir`: a command that opened it once (`exec 3< PATH`) blocks in `read x <&3`
 * until the test opens the gate, which writes one line. The test holds it open read-write for its
 * whole life (which never blocks, unlike a write-only open): a command that reopened it after
 * each line could meet the previous writer still there and then read EOF.
 */
function gate(dir: string, name: string): { path: string; open: () => void; close: () => void } {
  const path = join(dir, name);
  execFileSync("mkfifo", [path]);
  const fd = openSync(path, fsConstants.O_RDWR);
  return { path, open: () => void writeSync(fd, "go\n"), close: () => closeSync(fd) };
}

function assertExit(r: OpResult, code: number, signal = 0): void {
  assert.equal(r.error, undefined, `unexpected ERROR: ${r.error}`);
  // Nothing here is OOM-killed: a plain SIGKILL must not be taken for the OOM killer's.
  assert.deepEqual(r.exit, { code, signal, outOfMemory: false }, `stderr: ${r.stderr.toString()}`);
}

test("sends READY first, answers PING, ignores unknown frame types", LIMIT, async () => {
  await withAgent(async (agent) => {
    assert.equal(await agent.ready, "matchlock-agent 1");
    const unknown = encodeFrame(FrameType.PING, 42, Buffer.from("whatever"));
    unknown[0] = 0x7f;
    await agent.writeRaw(unknown);
    const r = await agent.ping();
    assert.equal(r.frames.length, 1);
    assert.equal(r.frames[0]!.type, FrameType.OK);
    assert.equal(r.frames[0]!.payload.length, 0);
  });
});

test("reassembles frames split across reads and handles several frames in one read", LIMIT, async () => {
  await withAgent(async (agent) => {
    const id = agent.allocId();
    const done = agent.track(id);
    for (const byte of encodeFrame(FrameType.PING, id)) {
      await agent.writeRaw(Buffer.from([byte]));
      await sleep(5);
    }
    assert.equal((await done).ok, true);

    const a = agent.allocId();
    const b = agent.allocId();
    const both = Promise.all([agent.track(a), agent.track(b)]);
    await agent.writeRaw(Buffer.concat([
      encodeFrame(FrameType.EXEC, a, encodeStrings(["", "", "echo one"])),
      encodeFrame(FrameType.PING, b),
    ]));
    const [ra, rb] = await both;
    assertExit(ra, 0);
    assert.equal(ra.stdout.toString(), "one\n");
    assert.equal(rb.ok, true);
  });
});

test("exec separates stdout from stderr and reports the exit code", LIMIT, async () => {
  await withAgent(async (agent) => {
    const r = await agent.exec("echo out; echo err >&2; echo more; exit 3");
    assertExit(r, 3);
    assert.equal(r.stdout.toString(), "out\nmore\n");
    assert.equal(r.stderr.toString(), "err\n");
    assert.equal(r.frames.at(-1)!.type, FrameType.EXIT);
    assert.ok(r.frames.slice(0, -1).every((f) => f.type === FrameType.STDOUT || f.type === FrameType.STDERR));
  });
});

test("exec killed by a signal reports code -1 and the signal", LIMIT, async () => {
  await withAgent(async (agent) => {
    assertExit(await agent.exec("kill -9 $$"), -1, 9);
  });
});

test("exec that cannot start sends one ERROR and no EXIT", LIMIT, async () => {
  await withAgent(async (agent) => {
    const bad = await agent.exec("echo never", { cwd: "/nope-matchlock" });
    assert.equal(bad.exit, undefined);
    assert.equal(bad.error, "chdir /nope-matchlock: No such file or directory");
    assert.equal(bad.frames.length, 1);

    const user = await agent.exec("echo never", { user: "nobody" });
    assert.equal(user.error, "invalid user: nobody");
    for (const u of ["1:x", "-1", "1:", "4294967295", " 1"]) {
      assert.equal((await agent.exec("true", { user: u })).error, `invalid user: ${u}`);
    }

    const malformed = await agent.op(FrameType.EXEC, Buffer.from("/\0\0echo no-terminator"));
    assert.match(malformed.error ?? "", /malformed/);
    // the agent is still fine afterwards
    assertExit(await agent.exec("exit 0"), 0);
  });
});

test("exec gets exactly the given environment and cwd (default /)", LIMIT, async () => {
  await withAgent(async (agent, dir) => {
    const env = ["A=1", "B=two words", "EMPTY=", "UNICODE=é", "PATH=/usr/bin:/bin"];
    // /proc/$$/environ is the environment the shell was exec'd with, byte for byte
    const r = await agent.exec("cat /proc/$$/environ", { env });
    assertExit(r, 0);
    assert.deepEqual(r.stdout, encodeStrings(env));

    const none = await agent.exec("/bin/cat /proc/$$/environ", { env: [] });
    assertExit(none, 0);
    assert.equal(none.stdout.length, 0);

    assert.equal((await agent.exec("pwd")).stdout.toString(), "/\n");
    assert.equal((await agent.exec("pwd", { cwd: dir })).stdout.toString(), `${dir}\n`);
  });
});

test("exec switches to uid:gid and drops supplementary groups", LIMIT, async () => {
  assert.equal(process.getuid?.(), 0, "this test runs as root");
  await withAgent(async (agent, dir) => {
    assert.equal((await agent.exec("id -G")).stdout.toString(), "0 4 27\n", "root keeps the agent's groups");
    const r = await agent.exec("id -u; id -g; id -G", { user: "65534:65534" });
    assertExit(r, 0);
    assert.equal(r.stdout.toString(), "65534\n65534\n65534\n");

    const uidOnly = await agent.exec("id -u; id -g", { user: "65534" });
    assertExit(uidOnly, 0);
    assert.equal(uidOnly.stdout.toString(), "65534\n0\n");

    // The cwd is entered as root first, like runc: a 0700 root-owned temp dir still works.
    const cwd = await agent.exec("pwd; id -u", { user: "1000:1000", cwd: dir });
    assertExit(cwd, 0);
    assert.equal(cwd.stdout.toString(), `${dir}\n1000\n`);
  }, { groups: [4, 27] });
});

test("exec runs with default signal dispositions and the umask the agent was given", LIMIT, async () => {
  await withAgent(async (agent) => {
    // The agent ignores SIGPIPE and catches SIGCHLD; none of that may leak into the command.
    // (exec: dash blocks every signal while it waits for a child, so do not look at the shell)
    const r = await agent.exec("exec grep -E '^Sig(Blk|Ign)' /proc/self/status");
    assertExit(r, 0);
    assert.equal(r.stdout.toString(), "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
    assert.equal((await agent.exec("umask")).stdout.toString(), "0027\n");
  }, { umask: 0o027 });
});

test("concurrent execs each get their own interleaved output", LIMIT, async () => {
  await withAgent(async (agent, dir) => {
    // Each job writes its next two lines only when the test opens its gate, and the test opens the
    // next job's gate only once the lines before have arrived: the frames must alternate between
    // the four execs in exactly this order, however the host schedules them (was: sleeps, which a
    // loaded host can stretch until the jobs run one after the other).
    const ROUNDS = 6;
    const jobs = [1, 2, 3, 4];
    const gates = new Map(jobs.map((k) => [k, gate(dir, `go${k}`)]));
    const script = (k: number) =>
      `exec 3< ${gates.get(k)!.path}; i=0; while [ $i -lt ${ROUNDS} ]; do read go <&3 || exit 99; echo "job${k} out $i"; echo "job${k} err $i" >&2; i=$((i+1)); done; exit ${k}`;
    const expected = (k: number, stream: string) =>
      Array.from({ length: ROUNDS }, (_, i) => `job${k} ${stream} ${i}\n`).join("");
    const log = new OutputLog();
    const started = await Promise.all(jobs.map((k) => agent.startExec(script(k), {}, log.onFrame(String(k)))));
    try {
      for (let i = 0; i < ROUNDS; i++) {
        for (const k of jobs) {
          gates.get(k)!.open();
          const both = (t: string) => t.includes(`job${k} out ${i}\n`) && t.includes(`job${k} err ${i}\n`);
          await log.until(`job ${k}'s lines of round ${i}`, () => both(log.text(String(k))));
        }
      }
    } finally {
      for (const g of gates.values()) g.close();
    }
    const results = await Promise.all(started.map((s) => s.done));
    results.forEach((r, i) => {
      const k = i + 1;
      assertExit(r, k);
      assert.equal(r.stdout.toString(), expected(k, "out"));
      assert.equal(r.stderr.toString(), expected(k, "err"));
    });
    // The frames really were interleaved on the channel, not one exec after the other.
    // (Output frames only: a job's EXIT may overtake the next job's lines of the last round.)
    const order = log.frames.map(([k]) => Number(k));
    const turns = order.filter((k, i) => i === 0 || k !== order[i - 1]);
    assert.deepEqual(turns, Array.from({ length: ROUNDS }, () => jobs).flat(), "the execs' output alternated, round by round");
  });
});

test("exec stdout carries all 256 byte values intact", LIMIT, async () => {
  await withAgent(async (agent) => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const escapes = [...all].map((b) => "\\" + b.toString(8).padStart(3, "0")).join("");
    const r = await agent.exec(`printf '${escapes}'; printf '${escapes}' >&2`);
    assertExit(r, 0);
    assert.deepEqual(r.stdout, all);
    assert.deepEqual(r.stderr, all);
  });
});

test("exec streams 10 MB of stdout intact", LIMIT, async () => {
  await withAgent(async (agent, dir) => {
    const data = randomBytes(10 * 1024 * 1024);
    await writeFile(join(dir, "big"), data);
    let frames = 0;
    const { done } = await agent.startExec(`cat ${dir}/big`, {}, (f) => {
      if (f.type === FrameType.STDOUT) {
        frames++;
        assert.ok(f.payload.length <= 256 * 1024, `a frame of ${f.payload.length} bytes`);
      }
    });
    const r = await done;
    assertExit(r, 0);
    assert.equal(r.stdout.length, data.length);
    assert.equal(sha256(r.stdout), sha256(data));
    assert.ok(frames >= 40, `${frames} STDOUT frames`);
  });
});

test("output written in many small writes is sent in few large frames", LIMIT, async () => {
  await withAgent(async (agent) => {
    const sizes: number[] = [];
    // 1024 writes of 4 KiB each, the way busybox's head and cat write
    const { done } = await agent.startExec("dd if=/dev/zero bs=4096 count=1024 2>/dev/null", {}, (f) => {
      if (f.type === FrameType.STDOUT) sizes.push(f.payload.length);
    });
    const r = await done;
    assertExit(r, 0);
    assert.equal(r.stdout.length, 4 * 1024 * 1024);
    assert.ok(r.stdout.every((b) => b === 0));
    // 16 frames of 256 KiB at best; an agent sending what each wakeup finds sends 64 to 1024
    assert.ok(sizes.length <= 48, `${sizes.length} frames for 1024 writes`);
  });
});

test("output after a quiet spell is sent at once, not held for more", LIMIT, async () => {
  await withAgent(async (agent, dir) => {
    // After each piece the command blocks until the test opens a gate, and the test opens it only
    // once that piece has arrived: an agent holding output for more (or for EXIT) never sends it,
    // and OutputLog.until fails.
    const g = gate(dir, "g");
    const log = new OutputLog();
    let r: OpResult;
    try {
      const { done } = await agent.startExec(`exec 3< ${g.path}; echo a; read x <&3; printf b; read x <&3; echo c`, {}, log.onFrame("cmd"));
      await log.until("'a' while the command waits", () => log.text("cmd") === "a\n");
      g.open();
      await log.until("'b' (no newline) while the command waits", () => log.text("cmd") === "a\nb");
      g.open();
      r = await done;
    } finally {
      g.close();
    }
    assertExit(r, 0);
    assert.equal(r.stdout.toString(), "a\nbc\n");
    assert.deepEqual(log.frames.map(([, text]) => text), ["a\n", "b", "c\n"]);
  });
});

test("a background process holding stdout does not delay EXIT", LIMIT, async () => {
  await withAgent(async (agent) => {
    // The background process holds the pipes for 60 s: an agent waiting for their EOF answers after
    // that, a right one within milliseconds; 30 s tells them apart on any machine.
    const t0 = performance.now();
    const r = await agent.exec("sleep 60 & echo $! >&2; echo hi");
    const elapsed = performance.now() - t0;
    assertExit(r, 0);
    assert.equal(r.stdout.toString(), "hi\n");
    assert.ok(elapsed < 30_000, `EXIT after ${elapsed.toFixed(0)} ms`);
    process.kill(Number(r.stderr.toString().trim()), "SIGKILL");
  });
});

test("output still in the pipes when the shell exits is drained before EXIT", LIMIT, async () => {
  await withAgent(async (agent) => {
    // The command grows its stdout pipe to 1 MiB (F_SETPIPE_SZ = 1031), fills it and exits,
    // while the agent is stuck writing another exec's output to the paused channel. When the
    // channel resumes, the exit and 1 MiB of unread output are pending at once.
    const full = await agent.startExec(
      `sleep 0.3; exec perl -e 'fcntl(STDOUT, 1031, 1048576) or die "F_SETPIPE_SZ: $!"; print "y" x 1048576'`);
    agent.proc.stdout.pause();
    const flood = await agent.startExec("head -c 4000000 /dev/zero");
    await sleep(1000);
    agent.proc.stdout.resume();
    const [rf, rflood] = await Promise.all([full.done, flood.done]);
    assertExit(rf, 0);
    assert.equal(rf.stdout.length, 1048576);
    assert.ok(rf.stdout.every((b) => b === 0x79));
    assertExit(rflood, 0);
    assert.equal(rflood.stdout.length, 4000000);
  });
});

test("write and read files: binary round trip, exact modes, parents, truncation, empty files", LIMIT, async () => {
  await withAgent(async (agent, dir) => {
    const path = join(dir, "a/b/c/file.bin");
    const data = randomBytes(600 * 1024); // three WRITE_DATA frames
    const w = await agent.writeFile(path, 0o755, data);
    assert.equal(w.error, undefined);
    assert.equal(w.ok, true);
    // the agent runs under umask 077 here: modes must still be exact
    assert.equal((await stat(path)).mode & 0o7777, 0o755);
    for (const d of ["a", "a/b", "a/b/c"]) {
      const st = await stat(join(dir, d));
      assert.ok(st.isDirectory());
      assert.equal(st.mode & 0o7777, 0o755, d);
    }

    const r = await agent.readFile(path);
    assert.equal(r.ok, true);
    assert.deepEqual(r.stdout, data);
    assert.ok(r.frames.slice(0, -1).every((f) => f.type === FrameType.STDOUT && f.payload.length <= READ_CHUNK));

    // overwrite with shorter content: truncated, and the new mode replaces the old one
    assert.equal((await agent.writeFile(path, 0o2640, Buffer.from("short"))).ok, true);
    assert.equal((await stat(path)).mode & 0o7777, 0o2640);
    assert.equal((await agent.readFile(path)).stdout.toString(), "short");

    const empty = join(dir, "empty");
    assert.equal((await agent.writeFile(empty, 0o600, Buffer.alloc(0))).ok, true);
    assert.equal((await stat(empty)).size, 0);
    const re = await agent.readFile(empty);
    assert.equal(re.ok, true);
    assert.equal(re.frames.length, 1);
  }, { umask: 0o077 });
});

test("write and read errors", LIMIT, async () => {
  await withAgent(async (agent, dir) => {
    await writeFile(join(dir, "f"), "x");
    const under = await agent.writeFile(join(dir, "f/sub/x"), 0o644, Buffer.from("data that is ignored"));
    assert.equal(under.error, `mkdir ${dir}/f/sub: Not a directory`);
    const open = await agent.writeFile(join(dir, "f/x"), 0o644, Buffer.from("ignored"));
    assert.equal(open.error, `open ${dir}/f/x: Not a directory`);
    assert.equal(open.frames.length, 1);
    assert.equal((await agent.writeFile(join(dir, "m"), 0o644, Buffer.alloc(0))).ok, true);
    assert.equal((await agent.op(FrameType.WRITE_OPEN, encodeStrings([join(dir, "m"), "8ab"]))).error, "invalid mode: 8ab");
    assert.match((await agent.op(FrameType.WRITE_OPEN, encodeStrings([join(dir, "m")]))).error ?? "", /malformed/);

    assert.equal((await agent.readFile(dir)).error, `read ${dir}: Is a directory`);
    assert.equal((await agent.readFile("/dev/null")).error, "read /dev/null: not a regular file");
    assert.equal((await agent.readFile(join(dir, "nope"))).error, `read ${dir}/nope: No such file or directory`);
    assert.match((await agent.op(FrameType.READ, Buffer.from(join(dir, "f")))).error ?? "", /malformed/);
  });
});

test("a huge READ does not starve a concurrent exec", LIMIT, async () => {
  await withAgent(async (agent, dir) => {
    const data = randomBytes(48 * 1024 * 1024);
    const path = join(dir, "huge");
    assert.equal((await agent.writeFile(path, 0o644, data)).ok, true);
    // The agent's writes block while nobody reads the channel, so the test holds the read back:
    // it lets the channel through a little at a time until the agent has forked the exec's shell,
    // then not at all until that shell has exited. Whatever the host's load, the exec can then
    // only finish second if the agent serves the whole read before anything else.
    const channel = agent.proc.stdout;
    channel.pause();
    const finished: string[] = [];
    const read = agent.readFile(path).then((r) => { finished.push("read"); return r; });
    const exec = agent.exec("echo hi").then((r) => { finished.push("exec"); return r; });
    const children = async () => (await readFile(`/proc/${agent.proc.pid}/task/${agent.proc.pid}/children`, "utf8")).trim().split(/\s+/).filter(Boolean).map(Number);
    let shell: number | undefined;
    while ((shell = (await children())[0]) === undefined && finished.length === 0) {
      channel.resume();
      await Promise.race([once(channel, "data"), sleep(50)]);
      channel.pause();
    }
    if (shell !== undefined) await waitDead(shell);
    channel.resume();
    const [r, e] = await Promise.all([read, exec]);
    assert.equal(sha256(r.stdout), sha256(data));
    assertExit(e, 0);
    assert.equal(e.stdout.toString(), "hi\n");
    assert.deepEqual(finished, ["exec", "read"]);
  });
});

test("list reports names, sizes, lstat modes and modification times, split into frames of at most 1 MiB", LIMIT, async () => {
  await withAgent(async (agent, dir) => {
    await writeFile(join(dir, "a.txt"), "hello");
    await writeFile(join(dir, "b.bin"), randomBytes(70000));
    await mkdir(join(dir, "sub"));
    await symlink("a.txt", join(dir, "link"));
    const r = await agent.list(dir);
    assert.equal(r.ok, true);
    const got = [...r.entries].sort((x, y) => x.name.localeCompare(y.name));
    const want = await Promise.all(["a.txt", "b.bin", "link", "sub"].map(async (name) => {
      const st = await lstat(join(dir, name), { bigint: true });
      return { name, size: Number(st.size), mode: Number(st.mode), mtimeMs: Number(st.mtimeNs / 1_000_000n), mtimeNs: Number(st.mtimeNs % 1_000_000_000n) };
    }));
    assert.deepEqual(got, want);
    assert.ok((got.find((e) => e.name === "link")!.mode & 0o170000) === 0o120000, "symlinks are not followed");

    const big = join(dir, "big");
    await mkdir(big);
    const names = Array.from({ length: 6000 }, (_, i) => `${String(i).padStart(5, "0")}-${"n".repeat(200)}`);
    await Promise.all(names.map((n) => writeFile(join(big, n), "")));
    const rb = await agent.list(big);
    assert.equal(rb.ok, true);
    const entryFrames = rb.frames.filter((f) => f.type === FrameType.ENTRIES);
    assert.ok(entryFrames.length >= 2, `${entryFrames.length} ENTRIES frames`);
    assert.ok(entryFrames.every((f) => f.payload.length <= MAX_PAYLOAD));
    assert.deepEqual(rb.entries.map((e) => e.name).sort(), names);

    assert.equal((await agent.list(join(dir, "nope"))).error, `list ${dir}/nope: No such file or directory`);
    assert.equal((await agent.list(join(dir, "a.txt"))).error, `list ${dir}/a.txt: Not a directory`);
  });
});

test("REMOVE, MKDIR, RENAME and STAT do what they say and fail with the system's reason", LIMIT, async () => {
  await withAgent(async (agent, dir) => {
    const op = (type: FrameTypeCode, ...fields: string[]) => agent.op(type, encodeStrings(fields));
    const p = (name: string) => join(dir, name);
    await writeFile(p("f"), "12345");
    const st = await lstat(p("f"), { bigint: true });
    const r = await op(FrameType.STAT, p("f"));
    assert.deepEqual(r.stat, { size: 5, mode: Number(st.mode), mtimeMs: Number(st.mtimeNs / 1_000_000n), mtimeNs: Number(st.mtimeNs % 1_000_000_000n) });
    assert.equal((await op(FrameType.STAT, p("nope"))).error, `stat ${p("nope")}: No such file or directory`);

    assert.equal((await op(FrameType.MKDIR, p("d"), String(0o711), "0")).ok, true);
    assert.equal((await stat(p("d"))).mode & 0o7777, 0o711, "exact mode, whatever the umask");
    assert.equal((await op(FrameType.MKDIR, p("d"), "493", "0")).error, `mkdir ${p("d")}: File exists`);
    assert.equal((await op(FrameType.MKDIR, p("d"), "493", "1")).ok, true, "parents: an existing directory is done");
    assert.equal((await op(FrameType.MKDIR, p("x/y/z"), "448", "1")).ok, true);
    assert.deepEqual([(await stat(p("x"))).mode & 0o777, (await stat(p("x/y/z"))).mode & 0o777], [0o755, 0o700]);
    assert.equal((await op(FrameType.MKDIR, p("f/sub"), "493", "1")).error, `mkdir ${p("f")}: Not a directory`);
    assert.equal((await op(FrameType.MKDIR, p("m"), "99999", "0")).error, "invalid MKDIR mode or parents: 99999 0");

    assert.equal((await op(FrameType.RENAME, p("f"), p("d/g"))).ok, true);
    assert.equal(await readFile(p("d/g"), "utf8"), "12345");
    assert.equal((await op(FrameType.RENAME, p("f"), p("h"))).error, `rename ${p("f")} to ${p("h")}: No such file or directory`);

    await symlink("/", p("d/root-link"));
    assert.equal((await op(FrameType.REMOVE, p("d"), "0")).error, `remove ${p("d")}: Directory not empty (remove it recursively)`);
    assert.equal((await op(FrameType.REMOVE, p("d"), "1")).ok, true);
    assert.equal(existsSync(p("d")), false);
    assert.ok(existsSync("/etc/hostname") || existsSync("/etc/passwd"), "a link in the tree is removed, not followed");
    assert.equal((await op(FrameType.REMOVE, p("x/y/z"), "0")).ok, true);
    assert.equal((await op(FrameType.REMOVE, p("x"), "0")).error, `remove ${p("x")}: Directory not empty (remove it recursively)`);
    assert.equal((await op(FrameType.REMOVE, p("gone"), "1")).error, `remove ${p("gone")}: No such file or directory`);
    assert.equal((await op(FrameType.REMOVE, p("x"), "one")).error, "invalid REMOVE flags: one");
    assert.equal((await agent.op(FrameType.RENAME, Buffer.from("only-one\0"))).error, "malformed RENAME payload");
  });
});

test("SIGNAL reaches an exec's whole process group; unknown ids are ignored", LIMIT, async () => {
  await withAgent(async (agent) => {
    await agent.signal(9999, 9);
    let firstOutput!: (s: string) => void;
    const pidText = new Promise<string>((resolve) => { firstOutput = resolve; });
    const { id, done } = await agent.startExec("sleep 100 & echo $!; wait; echo not reached", {}, (f) => {
      if (f.type === FrameType.STDOUT) firstOutput(f.payload.toString());
    });
    const sleeper = Number((await pidText).trim());
    assert.ok(isAlive(sleeper));
    const t0 = performance.now();
    await agent.signal(id, 15);
    const r = await done;
    assertExit(r, -1, 15);
    assert.equal(r.stdout.toString(), `${sleeper}\n`);
    assert.ok(performance.now() - t0 < 2000);
    await waitDead(sleeper); // the background child got the signal too
  });
});

test("EOF on stdin kills running execs' process groups and the agent exits 0", LIMIT, async () => {
  const agent = await AgentDriver.start();
  try {
    let firstOutput!: (s: string) => void;
    const pidText = new Promise<string>((resolve) => { firstOutput = resolve; });
    const { done } = await agent.startExec("sleep 100 & echo $$ $!; wait", {}, (f) => {
      if (f.type === FrameType.STDOUT) firstOutput(f.payload.toString());
    });
    const pids = (await pidText).trim().split(" ").map(Number);
    assert.equal(pids.length, 2);
    for (const pid of pids) assert.ok(pid > 1 && isAlive(pid));
    assert.deepEqual(await agent.stop(), { code: 0, signal: null });
    await assert.rejects(done, /agent exited/);
    // The shell is the agent's own child: reaped before the agent exits, so it is gone entirely.
    assert.throws(() => process.kill(pids[0]!, 0), { code: "ESRCH" });
    await waitDead(pids[1]!);
  } finally {
    agent.proc.kill("SIGKILL");
  }
});

test("an oversized frame is a fatal protocol error (exit 2)", LIMIT, async () => {
  const agent = await AgentDriver.start();
  try {
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeUInt8(FrameType.WRITE_DATA, 0);
    header.writeUInt32BE(1, 1);
    header.writeUInt32BE(MAX_PAYLOAD + 1, 5);
    await agent.writeRaw(header);
    assert.deepEqual(await agent.exited, { code: 2, signal: null });
    assert.match(agent.stderrText, /exceeds/);
  } finally {
    agent.proc.kill("SIGKILL");
  }
});

test("device mode (--channel PATH, as in the micro-VM) speaks the protocol over one read-write device", LIMIT, async () => {
  await withAgent(async (agent, dir) => {
    assert.equal(await agent.ready, "matchlock-agent 1");
    assertExit(await agent.exec("echo out; echo err >&2; exit 3"), 3);
    const big = randomBytes(300 * 1024);
    await writeFile(join(dir, "big"), big);
    const read = await agent.op(FrameType.READ, encodeStrings([join(dir, "big")]));
    assert.equal(sha256(read.stdout), sha256(big), "a 300 KiB read arrives intact through the raw pty");
    const r = await agent.exec("ls -l /proc/self/fd/ | grep -c pts || true");
    assert.equal(r.stdout.toString().trim(), "0", "the channel device is not inherited by commands");
  }, { channelDevice: true });
});

test("a bad command line is a usage error (exit 2); a missing channel device exits 1", LIMIT, async () => {
  const run = (args: string[]) => new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const p = spawn(AGENT_BINARY, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (code) => resolve({ code, stderr }));
  });
  const usage = await run(["--bogus"]);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /usage: matchlock-agent \[--channel DEVICE\]/);
  const missing = await run(["--channel", "/nonexistent/port"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /open \/nonexistent\/port: No such file or directory/);
});
