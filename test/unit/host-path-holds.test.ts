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
});
