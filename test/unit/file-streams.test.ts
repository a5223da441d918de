// Streamed file transfer over the agent channel, against the real agent binary on pipes (no
// sandbox): temp-file writes renamed on commit, cancel, open errors, and credit-metered reads
// whose engine-side buffer is bounded. Plus the hostile-guest side and the SDK's re-chunking.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chown, lstat, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, before, describe, test } from "node:test";
import { AgentConnection } from "../../src/engine/agent/connection.js";
import { AgentReadStream, AgentWriteStream, READ_WINDOW_CHUNKS } from "../../src/engine/agent/file-streams.js";
import { AgentProtocolError, FrameType, READ_CHUNK, encodeFrame } from "../../src/protocol/agent-frames.js";
import { rechunk } from "../../src/sdk/file-transfer.js";
import { AGENT_BINARY } from "../helpers/agent-driver.js";

const T = { timeout: 30_000 };

function startAgent() {
  const child = spawn(AGENT_BINARY, [], { stdio: ["pipe", "pipe", "inherit"] });
  const conn = new AgentConnection(child.stdin, child.stdout);
  const stop = async () => {
    conn.shutdown();
    if (child.exitCode === null) await new Promise((resolve) => child.once("exit", resolve));
  };
  return { conn, stop };
}

async function withAgent(fn: (conn: AgentConnection) => Promise<void>): Promise<void> {
  const { conn, stop } = startAgent();
  try {
    await conn.ready;
    await fn(conn);
  } finally {
    await stop();
  }
}

describe("streamed writes through the real agent", () => {
  let dir: string;
  before(async () => (dir = await mkdtemp(join(tmpdir(), "matchlock-stream-"))));
  after(() => rm(dir, { recursive: true, force: true }));

  test("data goes to a temporary file; the target appears, whole and with its mode, only on commit", T, () =>
    withAgent(async (conn) => {
      const target = join(dir, "sub", "deeper", "out.bin");
      const data = randomBytes(3 * 1024 * 1024 + 17);
      const w = await AgentWriteStream.open(conn, target, 0o640);
      await w.write(data.subarray(0, 1024 * 1024));
      await conn.ping(); // the agent has handled the first megabyte
      await assert.rejects(stat(target), { code: "ENOENT" });
      const temps = await readdir(join(dir, "sub", "deeper"));
      assert.equal(temps.length, 1);
      assert.match(temps[0]!, /^\.out\.bin\.matchlock-/);
      await w.write(data.subarray(1024 * 1024));
      await w.commit();
      assert.equal(w.size, data.length);
      assert.deepEqual(await readFile(target), data);
      assert.equal((await stat(target)).mode & 0o7777, 0o640);
      assert.deepEqual(await readdir(join(dir, "sub", "deeper")), ["out.bin"]);
    }));

  test("cancel leaves the old file untouched and no temporary file behind", T, () =>
    withAgent(async (conn) => {
      const target = join(dir, "keep.txt");
      await writeFile(target, "old content");
      const w = await AgentWriteStream.open(conn, target, 0o644);
      await w.write(Buffer.alloc(100_000, 1));
      w.cancel();
      await conn.ping();
      assert.equal(await readFile(target, "utf8"), "old content");
      assert.deepEqual((await readdir(dir)).filter((n) => n.includes("keep")), ["keep.txt"]);
      await assert.rejects(w.write(Buffer.from("more")), /cancelled|ended/);
    }));

  test("open errors come at open, with the guest's reason", T, () =>
    withAgent(async (conn) => {
      await assert.rejects(AgentWriteStream.open(conn, dir, 0o644), /open .*: Is a directory/);
      await writeFile(join(dir, "plain"), "x");
      await assert.rejects(AgentWriteStream.open(conn, join(dir, "plain", "child"), 0o644), /Not a directory/);
      await assert.rejects(AgentReadStream.open(conn, join(dir, "missing")), /read .*missing: No such file or directory/);
      await assert.rejects(AgentReadStream.open(conn, dir), /Is a directory/);
      await conn.ping(); // the channel is still fine
    }));

  test("the agent exiting mid-write leaves no temporary file", T, async () => {
    const { conn, stop } = startAgent();
    await conn.ready;
    const w = await AgentWriteStream.open(conn, join(dir, "never.bin"), 0o644);
    await w.write(Buffer.alloc(200_000));
    await conn.ping();
    await stop();
    assert.deepEqual((await readdir(dir)).filter((n) => n.includes("never")), []);
  });

  test("the temporary file sits next to a symlink's final target, with a short name, and gets the old owner", T, () =>
    withAgent(async (conn) => {
      const real = join(dir, "links", "real");
      await mkdir(real, { recursive: true });
      const name = "x".repeat(255);
      await writeFile(join(real, name), "old");
      await chown(join(real, name), 4321, 5432);
      await symlink(`real/${name}`, join(dir, "links", "hop"));
      await symlink(join(dir, "links", "hop"), join(dir, "links", "entry"));
      await symlink("entry", join(dir, "links", "loop-a"));
      await unlink(join(dir, "links", "entry"));
      await symlink("loop-a", join(dir, "links", "entry")); // entry -> loop-a -> entry: a loop
      await assert.rejects(AgentWriteStream.open(conn, join(dir, "links", "entry"), 0o644), /Too many levels of symbolic links/);

      const w = await AgentWriteStream.open(conn, join(dir, "links", "hop"), 0o600);
      await w.write(Buffer.from("new"));
      await conn.ping();
      const temps = (await readdir(real)).filter((n) => n !== name);
      assert.equal(temps.length, 1, "the temporary file is in the target's directory");
      assert.match(temps[0]!, /^\.x{40}\.matchlock-\w{6}$/);
      await w.commit();
      assert.equal((await lstat(join(dir, "links", "hop"))).isSymbolicLink(), true);
      const st = await stat(join(real, name));
      assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [4321, 5432, 0o600]);
      assert.equal(await readFile(join(real, name), "utf8"), "new");
      assert.deepEqual(await readdir(real), [name]);
    }));
});

describe("streamed reads through the real agent", () => {
  let file: string;
  let data: Buffer;
  before(async () => {
    file = join(await mkdtemp(join(tmpdir(), "matchlock-stream-")), "in.bin");
    data = randomBytes(5 * 1024 * 1024 + 3);
    await writeFile(file, data);
  });

  test("a reader that does not consume holds at most the credit window", T, () =>
    withAgent(async (conn) => {
      const r = await AgentReadStream.open(conn, file);
      // Each answered ping is one more turn of the agent's loop, which sends at most one chunk
      // of each read per turn: after this many, it has sent everything it was allowed to.
      for (let i = 0; i < READ_WINDOW_CHUNKS * 2; i++) await conn.ping();
      assert.equal(r.bufferedBytes, READ_WINDOW_CHUNKS * READ_CHUNK);
      const parts: Buffer[] = [];
      for (;;) {
        const { data: part, eof } = await r.next(1024 * 1024);
        assert.ok(part.length <= 1024 * 1024);
        parts.push(part);
        assert.ok(r.bufferedBytes <= READ_WINDOW_CHUNKS * READ_CHUNK);
        if (eof) break;
      }
      assert.deepEqual(Buffer.concat(parts), data);
    }));

  test("cancel stops a read part-way; the channel keeps working", T, () =>
    withAgent(async (conn) => {
      const r = await AgentReadStream.open(conn, file);
      await r.next(64 * 1024);
      r.cancel();
      await assert.rejects(r.next(64 * 1024), /ended|cancelled/);
      await conn.ping();
      const again = await AgentReadStream.open(conn, file);
      assert.ok((await again.next(1024)).data.length > 0);
      again.cancel();
    }));
});

describe("streamed reads against a hostile guest", () => {
  test("file data beyond the granted credit breaks the channel", T, async () => {
    const toAgent = new PassThrough();
    const fromAgent = new PassThrough();
    const conn = new AgentConnection(toAgent, fromAgent);
    fromAgent.write(encodeFrame(FrameType.READY, 0, Buffer.from("fake")));
    toAgent.resume();
    const opening = AgentReadStream.open(conn, "/f");
    await new Promise((resolve) => setImmediate(resolve));
    // READ_STREAM is id 1 and the ping id 2: answer the ping, then send one chunk more than the
    // window the engine granted.
    fromAgent.write(encodeFrame(FrameType.OK, 2));
    const r = await opening;
    for (let i = 0; i <= READ_WINDOW_CHUNKS; i++) fromAgent.write(encodeFrame(FrameType.STDOUT, 1, Buffer.alloc(10)));
    await assert.rejects(r.next(1 << 20).then(() => r.next(1 << 20)), AgentProtocolError);
    assert.ok(conn.lost instanceof AgentProtocolError);
  });
});

describe("SDK re-chunking", () => {
  test("arbitrary pieces become exact chunks with the same bytes", T, async () => {
    const src = randomBytes(10_000);
    async function* pieces() {
      let off = 0;
      for (const n of [1, 999, 0, 4000, 3, 5000, 2000]) {
        yield src.subarray(off, Math.min(off + n, src.length));
        off = Math.min(off + n, src.length);
      }
      yield "tail";
    }
    const chunks: Buffer[] = [];
    for await (const c of rechunk(pieces(), 1024)) chunks.push(c);
    assert.ok(chunks.slice(0, -1).every((c) => c.length === 1024));
    assert.deepEqual(Buffer.concat(chunks), Buffer.concat([src, Buffer.from("tail")]));
  });

  test("a stream of something other than bytes or strings is refused clearly", T, async () => {
    async function* bad() {
      yield 42 as unknown as Uint8Array;
    }
    await assert.rejects(async () => {
      for await (const _ of rechunk(bad())) void _;
    }, /yielded number; expected Uint8Array or string/);
  });
});
