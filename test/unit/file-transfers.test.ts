// The engine's chunked-transfer methods (src/engine/rpc/file-transfers.ts) against the real agent
// binary on pipes: file_abort racing write_file_close must answer what actually happened.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { AgentConnection } from "../../src/engine/agent/connection.js";
import { AgentReadStream, AgentWriteStream } from "../../src/engine/agent/file-streams.js";
import { FileTransfers } from "../../src/engine/rpc/file-transfers.js";
import type { Sandbox } from "../../src/engine/sandbox/sandbox.js";
import { AGENT_BINARY } from "../helpers/agent-driver.js";
import { eventually } from "../helpers/sdk-fixture.js";

const T = { timeout: 30_000 };

/**
 * FileTransfers over a real agent, with the engine's view of a commit held back until `release`:
 * the agent renames at once, but the close's reply waits, which is the window an abort can hit.
 */
async function withTransfers(fn: (transfers: FileTransfers, release: () => void) => Promise<void>): Promise<void> {
  const child = spawn(AGENT_BINARY, [], { stdio: ["pipe", "pipe", "inherit"] });
  const conn = new AgentConnection(child.stdin, child.stdout);
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const sandbox = {
    openReadStream: (path: string) => AgentReadStream.open(conn, path),
    async openWriteStream(path: string, mode: number) {
      const real = await AgentWriteStream.open(conn, path, mode);
      return {
        get size() { return real.size; },
        write: (data: Buffer) => real.write(data),
        cancel: () => real.cancel(),
        async commit() {
          const committed = real.commit();
          await gate;
          return committed;
        },
      };
    },
  } as unknown as Sandbox;
  try {
    await conn.ready;
    await fn(new FileTransfers(() => sandbox), release);
  } finally {
    conn.shutdown();
    if (child.exitCode === null) await new Promise((resolve) => child.once("exit", resolve));
  }
}

const data = (s: string) => Buffer.from(s).toString("base64");

/** The agent removes a dropped write's temporary file when the cancel reaches it: wait for that. */
async function assertNoTemporaryFile(dir: string, target: string): Promise<void> {
  const stem = target.replace(/\.[a-z]+$/, "");
  const names = async () => (await readdir(dir)).filter((n) => n.includes(stem));
  // The agent removes the temporary file when the abort or the failure reaches it.
  await eventually(async () => assert.deepEqual(await names(), [target]));
}

describe("file_abort against write_file_close", () => {
  let dir: string;
  before(async () => (dir = await mkdtemp(join(tmpdir(), "matchlock-transfers-"))));
  after(() => rm(dir, { recursive: true, force: true }));

  test("an abort after the close began waits for it and says the write completed, not aborted", T, () =>
    withTransfers(async (transfers, release) => {
      const target = join(dir, "raced.txt");
      await writeFile(target, "old");
      const { handle } = await transfers.handle("write_file_open", { path: target, mode: 0o644 });
      await transfers.handle("write_file_chunk", { handle, offset: 0, data: data("new content") });
      const closing = transfers.handle("write_file_close", { handle });
      // Let the close's step start: the agent gets the final frame and renames.
      await eventually(async () => assert.equal(await readFile(target, "utf8"), "new content"));
      const aborting = transfers.handle("file_abort", { handle });
      release();
      assert.deepEqual(await aborting, { aborted: false, completed: true });
      assert.deepEqual(await closing, { size: 11 });
      assert.deepEqual((await readdir(dir)).filter((n) => n.includes("raced")), ["raced.txt"]);
      assert.deepEqual(await transfers.handle("file_abort", { handle }), { aborted: false }, "the transfer is gone");
    }));

  test("an abort before the close begins wins: the close fails and the old file stays", T, () =>
    withTransfers(async (transfers, release) => {
      release();
      const target = join(dir, "kept.txt");
      await writeFile(target, "old");
      const { handle } = await transfers.handle("write_file_open", { path: target, mode: 0o644 });
      const chunk = transfers.handle("write_file_chunk", { handle, offset: 0, data: data("new content") });
      const closing = transfers.handle("write_file_close", { handle });
      closing.catch(() => {});
      assert.deepEqual(await transfers.handle("file_abort", { handle }), { aborted: true });
      await chunk.catch(() => {}); // the chunk may or may not have gone out before the abort
      await assert.rejects(closing, /aborted/);
      assert.equal(await readFile(target, "utf8"), "old");
      await assertNoTemporaryFile(dir, "kept.txt");
    }));
});

describe("chunks in flight through the real agent", () => {
  let dir: string;
  before(async () => (dir = await mkdtemp(join(tmpdir(), "matchlock-chunks-"))));
  after(() => rm(dir, { recursive: true, force: true }));
  const MiB = 1024 * 1024;

  test("a window of write chunks sent at once lands whole and in order", T, () =>
    withTransfers(async (transfers, release) => {
      release();
      const target = join(dir, "window.bin");
      const content = randomBytes(5 * MiB + 123);
      const { handle } = await transfers.handle("write_file_open", { path: target, mode: 0o600 });
      const chunks: Array<Promise<unknown>> = [];
      for (let off = 0; off < content.length; off += MiB) {
        chunks.push(transfers.handle("write_file_chunk", { handle, offset: off, data: content.subarray(off, off + MiB).toString("base64") }));
      }
      await Promise.all(chunks);
      assert.deepEqual(await transfers.handle("write_file_close", { handle }), { size: content.length });
      assert.ok((await readFile(target)).equals(content));
    }));

  test("a chunk lost on the way fails the write at the gap, says where, and leaves nothing", T, () =>
    withTransfers(async (transfers, release) => {
      release();
      const target = join(dir, "gap.bin");
      await writeFile(target, "old");
      const { handle } = await transfers.handle("write_file_open", { path: target, mode: 0o644 });
      const piece = randomBytes(MiB).toString("base64");
      const first = transfers.handle("write_file_chunk", { handle, offset: 0, data: piece });
      const third = transfers.handle("write_file_chunk", { handle, offset: 2 * MiB, data: piece }); // the second never came
      const closing = transfers.handle("write_file_close", { handle });
      closing.catch(() => {});
      await first;
      await assert.rejects(third, new RegExp(`chunk at offset ${2 * MiB}, but ${MiB} bytes were written so far`));
      await assert.rejects(closing, /chunk at offset/, "every later step gets the same error");
      assert.equal(await readFile(target, "utf8"), "old");
      await assertNoTemporaryFile(dir, "gap.bin");
    }));

  test("read chunks asked for two at a time come back in order, each up to max_bytes", T, () =>
    withTransfers(async (transfers) => {
      const source = join(dir, "read.bin");
      const content = randomBytes(3 * MiB + 5);
      await writeFile(source, content);
      const { handle } = await transfers.handle("read_file_open", { path: source });
      const parts: Buffer[] = [];
      let eof = false;
      let ahead = transfers.handle("read_file_chunk", { handle, max_bytes: MiB });
      while (!eof) {
        const next = transfers.handle("read_file_chunk", { handle, max_bytes: MiB });
        next.catch(() => {}); // asked past the end: the transfer is gone by then
        const r = (await ahead) as { data: { bytes: Buffer }; eof: boolean };
        assert.ok(r.data.bytes.length <= MiB);
        parts.push(r.data.bytes);
        eof = r.eof;
        ahead = next;
      }
      assert.ok(Buffer.concat(parts).equals(content));
      assert.ok(parts.length >= 4, `3 MiB + 5 bytes took ${parts.length} chunks of at most 1 MiB`);
    }));
});
