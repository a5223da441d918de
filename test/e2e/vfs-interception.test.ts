// End to end: vfs.interception (protocol spec 5.8) on a real sandbox (gVisor or micro-VM, from
// $MATCHLOCK_BACKEND). Block rules fail the matching operations with EPERM for the sandbox's own
// commands and -32002 through the file RPCs; every operation on the mounts is a file event.
import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { BACKEND, BUSYBOX, setUpE2E } from "../helpers/e2e.js";
import { RawSession } from "../helpers/raw-rpc.js";

interface FileEventParams { type: string; timestamp: number; file: { op: string; path: string; size: number; mode: number; uid: number; gid: number } }

describe(`vfs interception on a ${BACKEND} sandbox`, () => {
  let s: RawSession;
  let hostDir: string;
  let nextId = 0;
  const events: FileEventParams[] = [];

  /** One call; the `event` notifications that arrive meanwhile are kept in `events`. */
  async function call(method: string, params: object): Promise<any> {
    const id = ++nextId;
    s.send({ jsonrpc: "2.0", method, params, id });
    for (;;) {
      const msg = await s.next();
      if (msg.method === "event") events.push(msg.params);
      else if (msg.id === id) return msg;
    }
  }
  const sh = async (command: string, user?: string) => {
    const r = (await call("exec", { command, ...(user ? { user } : {}) })).result;
    return { code: r.exit_code as number, out: Buffer.from(r.stdout, "base64").toString() + Buffer.from(r.stderr, "base64").toString() };
  };
  const b64 = (t: string) => Buffer.from(t).toString("base64");

  before(async () => {
    await setUpE2E();
    hostDir = await mkdtemp(join(tmpdir(), "vfs-intercept-"));
    await writeFile(join(hostDir, "kept.txt"), "host content");
    await chmod(hostDir, 0o755); // other users may enter, as in a usual project directory
    s = new RawSession();
    const created = await call("create", {
      image: BUSYBOX,
      vfs: {
        workspace: "/workspace",
        mounts: { "/workspace": { type: "host_fs", host_path: hostDir }, "/workspace/scratch": { type: "memory" } },
        interception: {
          emit_events: true,
          rules: [
            { name: "no secrets", ops: ["create"], path: "/workspace/blocked.txt", action: "block" },
            { ops: ["WRITE", "remove", "chmod", "truncate"], path: "/workspace/kept.txt", action: "block" },
            { ops: ["read_dir"], path: "/workspace/scratch", action: "block" },
            { ops: ["write"], path: "/workspace/*", action: "allow" },
          ],
        },
      },
    });
    assert.ok(created.result?.id, JSON.stringify(created));
  });
  after(async () => {
    await call("close", {}).catch(() => {});
    s.proc.kill("SIGKILL");
  });

  test("file RPCs: a blocked create or write is -32002 Operation not permitted; the rest works", async () => {
    const blocked = await call("write_file", { path: "/workspace/blocked.txt", content: b64("x") });
    assert.equal(blocked.error?.code, -32002, JSON.stringify(blocked));
    assert.match(blocked.error.message, /Operation not permitted/);
    const overwrite = await call("write_file", { path: "/workspace/kept.txt", content: b64("changed") });
    assert.equal(overwrite.error?.code, -32002, JSON.stringify(overwrite));
    assert.equal(await readFile(join(hostDir, "kept.txt"), "utf8"), "host content");
    assert.deepEqual((await call("write_file", { path: "/workspace/ok.txt", content: b64("fine") })).result, {});
    assert.equal(await readFile(join(hostDir, "ok.txt"), "utf8"), "fine");
    assert.equal(Buffer.from((await call("read_file", { path: "/workspace/kept.txt" })).result.content, "base64").toString(), "host content");
    const list = await call("list_files", { path: "/workspace/scratch" });
    assert.equal(list.error?.code, -32002, JSON.stringify(list));
    const removed = await call("remove_file", { path: "/workspace/kept.txt" });
    assert.equal(removed.error?.code, -32002, JSON.stringify(removed));
  });

  test("commands: the same rules hold, as EPERM, for any user", async () => {
    const create = await sh("echo x > /workspace/blocked.txt");
    assert.notEqual(create.code, 0);
    assert.match(create.out, /Operation not permitted/);
    for (const cmd of ["echo y >> /workspace/kept.txt", "rm /workspace/kept.txt", "chmod 600 /workspace/kept.txt", ": > /workspace/kept.txt", "ls /workspace/scratch"]) {
      const r = await sh(cmd, "nobody");
      assert.notEqual(r.code, 0, `${cmd} succeeded`);
      assert.match(r.out, /Operation not permitted|Permission denied/, cmd);
    }
    assert.deepEqual(await sh("cat /workspace/kept.txt && echo made > /workspace/scratch/new && cat /workspace/scratch/new && mkdir -p /workspace/d/e && mv /workspace/d /workspace/f && ls /workspace/f"),
      { code: 0, out: "host contentmade\ne\n" });
    assert.equal(await readFile(join(hostDir, "kept.txt"), "utf8"), "host content");
  });

  test("a name a rule covers cannot leave its reach by a hard link or a rename", async () => {
    for (const cmd of ["ln /workspace/kept.txt /workspace/k2", "mv /workspace/kept.txt /workspace/k3", "echo z > /workspace/z && mv /workspace/z /workspace/kept.txt"]) {
      const r = await sh(cmd);
      assert.notEqual(r.code, 0, `${cmd} succeeded`);
      assert.match(r.out, /Operation not permitted/, cmd);
    }
    assert.equal(await readFile(join(hostDir, "kept.txt"), "utf8"), "host content");
    assert.deepEqual(await sh("ls /workspace/k2 /workspace/k3 2>/dev/null; mv /workspace/z /workspace/z2 && echo moved"), { code: 0, out: "moved\n" });
  });

  test("the directories behind the rules are not reachable around them", async () => {
    // The hidden mounts were detached (they live on only inside the server), and the place where
    // they were is covered, so no layer below shows them either.
    const r = await sh("find /.matchlock/vfs -mindepth 1 2>&1; grep -c ' /.matchlock/vfs/' /proc/mounts; umount /.matchlock/vfs 2>&1 || echo refused");
    assert.match(r.out, /^0\n.*\nrefused\n$/s);
  });

  test("events: every operation, with op, guest path, size, mode, ids and a millisecond timestamp", async () => {
    const started = Date.now();
    assert.deepEqual(await sh("echo hello > /workspace/ev.txt && chmod 644 /workspace/ev.txt && cat /workspace/ev.txt", "0:0"), { code: 0, out: "hello\n" });
    assert.deepEqual(await sh("cat /workspace/ev.txt > /dev/null", "nobody"), { code: 0, out: "" });
    // A command's events come before its exec's answer: nothing to wait for.
    const file = events.filter((e) => e.type === "file" && e.file.path === "/workspace/ev.txt");
    const ops = new Set(file.map((e) => e.file.op));
    for (const op of ["create", "write", "open", "read", "close", "stat", "chmod"]) assert.ok(ops.has(op), `no ${op} event: ${[...ops]}`);
    const write = file.find((e) => e.file.op === "write")!;
    assert.equal(write.file.size, 6);
    assert.equal(write.file.uid, 0);
    const created = file.find((e) => e.file.op === "create")!;
    assert.equal(created.file.mode & 0o777, 0o644);
    const nobodyRead = file.find((e) => e.file.op === "read" && e.file.uid === 65534);
    assert.ok(nobodyRead, "no read event of uid 65534");
    for (const e of file) assert.ok(e.timestamp >= started - 1000 && e.timestamp <= Date.now(), `timestamp ${e.timestamp} is not milliseconds of now`);
    const blocked = events.find((e) => e.file?.op === "create" && e.file.path === "/workspace/blocked.txt");
    assert.ok(blocked, "blocked operations are events too");
    const outside = events.find((e) => !e.file?.path.startsWith("/workspace"));
    assert.equal(outside, undefined, "only operations on the mounts are events");
  });
});
