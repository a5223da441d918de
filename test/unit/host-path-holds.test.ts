// A checked host path stays the object it named: held open, with an identity the backends'
// binds must reach (the shell check they run), however the path changes after the check.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { SAME_OBJECT_SH } from "../../src/engine/backends/backend.js";
import { HeldHostPaths, MountConfigError } from "../../src/engine/vfs/mounts.js";

const exec = promisify(execFile);

describe("held host paths", () => {
  let base: string;
  before(async () => {
    base = await mkdtemp(join(tmpdir(), "matchlock-held-"));
  });
  after(() => rm(base, { recursive: true, force: true }));

  test("the held object stays the checked directory after a symlink takes its path", async () => {
    const dir = join(base, "swap", "sub");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "mine.txt"), "mine");
    const held = new HeldHostPaths();
    try {
      const checked = await held.hold(`${dir}/`, "/w");
      const st = await stat(dir);
      assert.equal(checked.path, dir);
      assert.equal(checked.identity, `${st.dev}:${st.ino}`);
      // The attack: the path now leads to the host's /etc.
      await rename(dir, join(base, "swap", "moved"));
      await symlink("/etc", dir);
      assert.deepEqual(await readdir(checked.held), ["mine.txt"]);
      const etc = await stat("/etc");
      assert.notEqual(`${etc.dev}:${etc.ino}`, checked.identity);
    } finally {
      await held.release();
    }
  });

  test("a link on the path is refused before anything is held", async () => {
    await mkdir(join(base, "real"), { recursive: true });
    await symlink(join(base, "real"), join(base, "link"));
    const held = new HeldHostPaths();
    await assert.rejects(held.hold(join(base, "link"), "/w"), (e: unknown) => e instanceof MountConfigError && /symbolic link/.test(e.message));
    await held.release();
  });

  test("the backends' check passes only for the checked object, and says why otherwise", async () => {
    const a = join(base, "a");
    const b = join(base, "b");
    await mkdir(a);
    await mkdir(b);
    const st = await stat(a);
    const check = (path: string, identity: string) => exec("sh", ["-c", `${SAME_OBJECT_SH}\nsame_object "$1" "$2" "$3"`, "sh", path, identity, a]);
    await check(a, `${st.dev}:${st.ino}`);
    await check(b, "-");
    await assert.rejects(check(b, `${st.dev}:${st.ino}`), (e: { stderr?: string }) => /host path .*\/a changed while it was being mounted/.test(e.stderr ?? ""));
  });

  test("a failed bind is blamed on the path only when the path is no longer the checked object", async () => {
    const c = join(base, "c");
    await mkdir(c);
    const st = await stat(c);
    const failedBind = (path: string, identity: string) =>
      exec("sh", ["-c", `${SAME_OBJECT_SH}\nfalse || changed_while_mounted "$1" "$2"`, "sh", path, identity]).then(
        () => assert.fail("the script went on after a failed bind"),
        (e: { code?: number; stderr?: string }) => e,
      );
    // Still the checked object: the bind failed for its own reason (mount says which).
    assert.deepEqual([(await failedBind(c, `${st.dev}:${st.ino}`)).code, (await failedBind(c, `${st.dev}:${st.ino}`)).stderr], [1, ""]);
    // An engine-owned path: nothing to prove.
    assert.equal((await failedBind(join(base, "gone"), "-")).stderr, "");
    // Gone since the check, or another object in its place.
    assert.match((await failedBind(join(base, "gone"), `${st.dev}:${st.ino}`)).stderr ?? "", /host path .*\/gone changed while it was being mounted \(it went away/);
    assert.match((await failedBind(base, `${st.dev}:${st.ino}`)).stderr ?? "", /changed while it was being mounted/);
  });

  test("a path that comes and goes while it is held is refused as changed or missing, never as unreadable", async () => {
    const dir = join(base, "flicker", "sub");
    await mkdir(dir, { recursive: true });
    // Another process moves the directory away and back, and puts a link there in between.
    const swapper = execFile("sh", ["-c", 'cd "$1" && ln -s /etc link && while :; do mv sub dir; mv link sub; mv sub link; mv dir sub; done', "sh", join(base, "flicker")]);
    const seen = new Set<string>();
    try {
      // The swapping has begun once its link is there (the holds must meet it, however slowly sh starts).
      while (!(await readdir(join(base, "flicker"))).some((n) => n !== "sub")) await new Promise((r) => setImmediate(r));
      for (let i = 0; i < 400; i++) {
        const held = new HeldHostPaths();
        try {
          const checked = await held.hold(dir, "/w");
          assert.equal(checked.path, dir);
          seen.add("held");
        } catch (err) {
          assert.ok(err instanceof MountConfigError, String(err));
          const why = /changed while it was checked|does not exist|symbolic link/.exec(err.message);
          assert.ok(why, err.message);
          seen.add(why[0]);
        } finally {
          await held.release();
        }
      }
    } finally {
      swapper.kill("SIGKILL");
    }
    assert.ok(seen.size >= 2, `the path did change under the holds: ${[...seen].join(", ")}`);
  });
});
