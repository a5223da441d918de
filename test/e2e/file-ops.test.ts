// End to end: remove, make_dir, rename, stat and list_files' mod_time on real sandboxes (gVisor or
// micro-VM, from $MATCHLOCK_BACKEND), through the SDK and the engine down to the agent.
import assert from "node:assert/strict";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { GoFileMode, RPCError, Sandbox, type Client } from "../../src/sdk/index.js";
import { BACKEND, BUSYBOX, newClient, setUpE2E } from "../helpers/e2e.js";
import { RawSession } from "../helpers/raw-rpc.js";

/** An RPCError with code -32002 whose message is `message` (the guest's reason). */
function fileError(message: string | RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof RPCError, `not an RPCError: ${String(err)}`);
    assert.equal(err.isFileError(), true, `code ${err.code}: ${err.message}`);
    const reason = err.message.replace(/^\[-32002\] /, "");
    if (typeof message === "string") assert.equal(reason, message);
    else assert.match(reason, message);
    return true;
  };
}

describe(`file operations on a ${BACKEND} sandbox`, () => {
  let client: Client;
  let hostDir: string;

  before(async () => {
    await setUpE2E();
    hostDir = await mkdtemp(join(tmpdir(), "file-ops-host-"));
    await writeFile(join(hostDir, "kept.txt"), "host content");
    client = newClient();
    await client.launch(new Sandbox(BUSYBOX).mountHostDirReadonly("/ro", hostDir).mountHostDir("/rw", hostDir));
  });
  after(async () => {
    await client.close();
    await client.remove();
  });

  const sh = async (command: string) => {
    const r = await client.exec(command);
    assert.equal(r.exitCode, 0, r.stderr);
    return r.stdout;
  };

  test("makeDir: exact modes, parents on request, and the guest's reason on failure", async () => {
    await client.makeDir("/made");
    await client.makeDir("/made/private", { mode: 0o700 });
    await client.makeDir("/made/a/b/c", { parents: true, mode: 0o750 });
    await client.makeDir("/made/a/b/c", { parents: true }); // exists: done
    assert.equal(await sh("stat -c '%a %n' /made /made/private /made/a /made/a/b /made/a/b/c"),
      "755 /made\n700 /made/private\n755 /made/a\n755 /made/a/b\n750 /made/a/b/c\n");
    await assert.rejects(client.makeDir("/made"), fileError("mkdir /made: File exists"));
    await assert.rejects(client.makeDir("/made/x/y"), fileError("mkdir /made/x/y: No such file or directory"));
    await client.writeFile("/made/file", "f");
    await assert.rejects(client.makeDir("/made/file/sub", { parents: true }), fileError("mkdir /made/file: Not a directory"));
    await assert.rejects(client.makeDir("/ro/new"), fileError("mkdir /ro/new: Read-only file system"));
    await assert.rejects(client.makeDir("relative"), fileError('path must be absolute: "relative"'));
  });

  test("removeFile: files, links (not their targets), empty directories, and trees only when recursive", async () => {
    await sh("mkdir -p /tree/sub/deeper && echo x > /tree/sub/deeper/f && echo y > /tree/top && ln -s /etc /tree/etc-link && echo t > /target && ln -s /target /link");
    await client.removeFile("/link");
    assert.equal(await sh("cat /target; test -e /link || echo link-gone"), "t\nlink-gone\n");
    await client.removeFile("/target");
    await assert.rejects(client.removeFile("/target"), fileError("remove /target: No such file or directory"));
    await assert.rejects(client.removeFile("/tree"), fileError("remove /tree: Directory not empty (remove it recursively)"));
    await client.removeFile("/tree", { recursive: true });
    assert.equal(await sh("test -e /tree || echo tree-gone; test -f /etc/passwd && echo etc-intact"), "tree-gone\netc-intact\n");
    await sh("mkdir /empty");
    await client.removeFile("/empty");
    assert.equal(await sh("test -e /empty || echo gone"), "gone\n");
    await assert.rejects(client.removeFile("/ro/kept.txt"), fileError("remove /ro/kept.txt: Read-only file system"));
    await assert.rejects(client.removeFile("/"), fileError("cannot remove /"));
    await assert.rejects(client.removeFile("/a\0b"), fileError("path must not contain NUL bytes"));
  });

  test("removeFile and renameFile on a read-write host mount reach the host", async () => {
    await writeFile(join(hostDir, "to-remove"), "bye");
    await writeFile(join(hostDir, "to-rename"), "moved");
    await client.removeFile("/rw/to-remove");
    await client.renameFile("/rw/to-rename", "/rw/renamed");
    assert.equal(await readFile(join(hostDir, "renamed"), "utf8"), "moved");
    await assert.rejects(readFile(join(hostDir, "to-remove")), { code: "ENOENT" });
    await assert.rejects(readFile(join(hostDir, "to-rename")), { code: "ENOENT" });
  });

  test("renameFile: files and directories, replacing a file atomically; the guest's reason on failure", async () => {
    await client.writeFile("/work/old.txt", "content");
    await client.writeFile("/work/existing.txt", "to be replaced");
    await client.renameFile("/work/old.txt", "/work/existing.txt");
    assert.equal((await client.readFile("/work/existing.txt")).toString(), "content");
    await client.makeDir("/work/dir");
    await client.writeFile("/work/dir/inner", "i");
    await client.renameFile("/work/dir", "/work/moved");
    assert.equal((await client.readFile("/work/moved/inner")).toString(), "i");
    await assert.rejects(client.renameFile("/work/nope", "/work/x"), fileError("rename /work/nope to /work/x: No such file or directory"));
    await assert.rejects(client.renameFile("/work/moved", "/work/existing.txt"), fileError("rename /work/moved to /work/existing.txt: Not a directory"));
    await assert.rejects(client.renameFile("/work/existing.txt", "/ro/x"), fileError(/^rename \/work\/existing\.txt to \/ro\/x: (Invalid cross-device link|Read-only file system)$/));
  });

  test("statFile: size, mode, kind and the guest's modification time", async () => {
    await client.writeFile("/stat/file.bin", Buffer.alloc(1234, 1), { mode: 0o640 });
    await sh("touch -d '2001-02-03 04:05:06' /stat/file.bin && mkdir -p /stat/dir && ln -sf file.bin /stat/link");
    const file = await client.statFile("/stat/file.bin");
    assert.deepEqual({ ...file, modTime: file.modTime?.toISOString() }, {
      name: "file.bin", size: 1234, mode: 0o640, isDir: false, modTime: "2001-02-03T04:05:06.000Z",
    });
    const dir = await client.statFile("/stat/dir");
    assert.equal(dir.isDir, true);
    assert.equal(dir.mode, GoFileMode.DIR + 0o755);
    const link = await client.statFile("/stat/link");
    assert.equal(link.mode, GoFileMode.SYMLINK + 0o777, "the link itself, not its target");
    assert.equal((await client.statFile("/")).name, "/");
    await assert.rejects(client.statFile("/stat/missing"), fileError("stat /stat/missing: No such file or directory"));
  });

  test("listFiles carries each entry's modification time, as statFile reports it", async () => {
    await sh("mkdir -p /listed && echo a > /listed/a && touch -d '1999-12-31 23:59:58' /listed/a && echo b > /listed/b");
    const now = Number((await sh("date +%s")).trim());
    const entries = new Map((await client.listFiles("/listed")).map((f) => [f.name, f]));
    assert.equal(entries.get("a")?.modTime?.toISOString(), "1999-12-31T23:59:58.000Z");
    const b = entries.get("b")?.modTime;
    assert.ok(b, "b has a modification time");
    // The guest's own clock wrote it: within a minute of the guest's "now" (far from both a wrong epoch and a zero time).
    assert.ok(Math.abs(b.getTime() / 1000 - now) < 60, `b: ${b.toISOString()}, guest now ${now}`);
    assert.deepEqual((await client.statFile("/listed/b")).modTime, b);
  });
});

describe(`the file operations on the wire (${BACKEND})`, () => {
  test("before a create: -32000 VM not created; then strict params and the wire shapes", async () => {
    await setUpE2E();
    const s = new RawSession();
    try {
      let id = 1;
      for (const method of ["remove_file", "make_dir", "rename_file", "stat_file"]) {
        const r = await s.call(method, { path: "/x" }, id++);
        assert.equal(r.error?.code, -32000, JSON.stringify(r));
        assert.equal(r.error.message, "VM not created");
      }
      assert.equal((await s.call("create", { image: BUSYBOX }, id++)).error, undefined);
      const refused: Array<[string, object, RegExp]> = [
        ["remove_file", { path: "/x", force: true }, /force/],
        ["remove_file", { path: "/x", recursive: "yes" }, /recursive/],
        ["make_dir", { path: "/x", mode: 0o10000 }, /mode must be permission bits, at most 0o7777/],
        ["rename_file", { old_path: "/x" }, /new_path/],
        ["stat_file", {}, /path/],
      ];
      for (const [method, params, why] of refused) {
        const r = await s.call(method, params, id++);
        assert.equal(r.error?.code, -32602, `${method} ${JSON.stringify(r)}`);
        assert.match(r.error.message, why);
      }
      assert.deepEqual((await s.call("make_dir", { path: "/w/a", parents: true, mode: 0o700 }, id++)).result, {});
      const st = await s.call("stat_file", { path: "/w/a" }, id++);
      assert.equal(st.result.file.name, "a");
      assert.equal(st.result.file.mode, 2 ** 31 + 0o700);
      assert.equal(st.result.file.is_dir, true);
      assert.match(st.result.file.mod_time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/);
      assert.deepEqual((await s.call("rename_file", { old_path: "/w/a", new_path: "/w/b" }, id++)).result, {});
      const listed = await s.call("list_files", { path: "/w" }, id++);
      assert.deepEqual(listed.result.files.map((f: { name: string; mod_time: string }) => [f.name, f.mod_time]), [["b", st.result.file.mod_time]]);
      assert.deepEqual((await s.call("remove_file", { path: "/w", recursive: true }, id++)).result, {});
      const gone = await s.call("stat_file", { path: "/w" }, id++);
      assert.equal(gone.error?.code, -32002);
      assert.equal(gone.error.message, "stat /w: No such file or directory");
      assert.equal(gone.error.data?.kind, "failed");
      await s.call("close", {}, id++);
    } finally {
      s.proc.stdin.end();
      await s.exited;
    }
  });
});
