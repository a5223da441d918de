// The helper that makes a gVisor sandbox's private mount namespace, run for real (as root) with
// a shell in place of runsc that reports what it sees there.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { inPrivateMounts } from "../../src/engine/backends/gvisor/private-mounts.js";

const exec = promisify(execFile);

describe("the private mount namespace helper", () => {
  let base: string;
  let image: string;
  before(async () => {
    base = await mkdtemp(join(tmpdir(), "matchlock-private-mounts-"));
    image = join(base, "image");
    await mkdir(image);
    await writeFile(join(image, "in-image.txt"), "image");
    for (const d of ["ro-dir/sub", "rw-dir"]) await mkdir(join(base, d), { recursive: true });
    await writeFile(join(base, "ro-file"), "file");
  });
  after(() => rm(base, { recursive: true, force: true }));

  /** A state directory of its own for each run, as each sandbox has. */
  async function freshState(): Promise<string> {
    const state = await mkdtemp(join(base, "state-"));
    await mkdir(join(state, "rootfs"));
    return state;
  }

  async function identity(path: string): Promise<string> {
    const st = await stat(path);
    return `${st.dev}:${st.ino}`;
  }

  test("the overlay root, the writes tmpfs and the host binds, read-only ones with their submounts", async () => {
    const s = await freshState();
    const binds = [
      { readonly: true, path: join(base, "ro-dir"), identity: await identity(join(base, "ro-dir")) },
      { readonly: false, path: join(base, "rw-dir"), identity: await identity(join(base, "rw-dir")) },
      { readonly: true, path: join(base, "ro-file"), identity: "-" },
    ];
    const report = [
      'r=$1; cd "$r"',
      'cat merged/in-image.txt; echo',
      'touch merged/new && echo root-writable',
      'touch ro/0/x 2>/dev/null || echo ro-refused',
      'touch ro/0/sub/x 2>/dev/null || echo ro-submount-refused',
      'echo more >> ro/2 2>/dev/null || echo ro-file-refused',
      'touch rw/1/made && echo rw-written',
      'touch lower/x 2>/dev/null || echo image-read-only',
      'grep -q " $r/writes tmpfs " /proc/self/mounts && echo writes-tmpfs',
      'ls /proc/sys/net | wc -l',
    ].join("\n");
    // A tmpfs mounted on ro-dir/sub in a namespace of the test's own: the submount the bind takes along.
    const [cmd, args] = inPrivateMounts(s, image, true, 8, binds, "sh", ["-c", report, "sh", join(s, "rootfs")]);
    const { stdout } = await exec("unshare", ["-m", "--propagation", "private", "sh", "-c", 'mount -t tmpfs sub "$0" && exec "$@"', join(base, "ro-dir", "sub"), cmd, ...args]);
    assert.deepEqual(stdout.trim().split("\n"), [
      "image", "root-writable", "ro-refused", "ro-submount-refused", "ro-file-refused", "rw-written", "image-read-only", "writes-tmpfs", "0",
    ]);
    assert.ok((await stat(join(base, "rw-dir", "made"))).isFile(), "the read-write bind reaches the host directory");
    assert.equal(await readFile(join(base, "ro-file"), "utf8"), "file");
    await assert.rejects(stat(join(image, "new")), "the image is untouched");
  });

  test("a host path that is no longer the checked object is refused before the command runs", async () => {
    const s = await freshState();
    const wrong = await identity(join(base, "rw-dir"));
    const [cmd, args] = inPrivateMounts(s, image, false, 8, [{ readonly: true, path: join(base, "ro-dir"), identity: wrong }], "sh", ["-c", "echo ran"]);
    const err = await exec(cmd, args).then(() => assert.fail("the helper ran its command"), (e: { code: number; stdout: string; stderr: string }) => e);
    assert.equal(err.code, 1);
    assert.equal(err.stdout, "");
    assert.match(err.stderr, new RegExp(`host path ${join(base, "ro-dir")} changed while it was being mounted \\(it went away`));
  });

  test("a checked path that is gone is said to have changed; a gone path the engine owns, by mount's reason", async () => {
    const s = await freshState();
    const gone = join(base, "gone");
    const [cmd, args] = inPrivateMounts(s, image, false, 8, [{ readonly: false, path: gone, identity: await identity(join(base, "rw-dir")) }], "true", []);
    await assert.rejects(exec(cmd, args), (e: { stderr: string }) => /host path .*\/gone changed while it was being mounted/.test(e.stderr));
    const [cmd2, args2] = inPrivateMounts(await freshState(), image, false, 8, [{ readonly: true, path: gone, identity: "-" }], "true", []);
    await assert.rejects(exec(cmd2, args2), (e: { stderr: string }) => /cannot bind-mount host path .*\/gone: No such file or directory/.test(e.stderr));
  });

  test("an extra disk is mounted from its held image on a loop device, read-only when asked; a missing image is said", async () => {
    const disk = join(base, "disk.ext4");
    await exec("truncate", ["-s", "8M", disk]);
    await exec("mkfs.ext4", ["-q", "-F", "-d", join(base, "ro-dir"), disk]);
    const report = 'cd "$1" && test -d disk/0/sub && echo has-sub; touch disk/0/x 2>/dev/null || echo disk-read-only; grep -c " $1/disk/0 ext4 ro,nosuid,nodev" /proc/self/mounts';
    const s = await freshState();
    const [cmd, args] = inPrivateMounts(s, image, false, 8, [], "sh", ["-c", report, "sh", join(s, "rootfs")], [{ hostPath: disk, guestPath: "/data", readonly: true }]);
    const { stdout } = await exec(cmd, args);
    assert.deepEqual(stdout.trim().split("\n"), ["has-sub", "disk-read-only", "1"]);
    const [cmd2, args2] = inPrivateMounts(await freshState(), image, false, 8, [], "true", [], [{ hostPath: "/data.ext4", held: join(base, "no-such.ext4"), guestPath: "/data", readonly: false }]);
    await assert.rejects(exec(cmd2, args2), (e: { stderr: string }) => /cannot mount the extra disk \/data.ext4 \(an ext4 image, on a loop device\): open the image: No such file or directory/.test(e.stderr));
  });

  test("bad arguments are refused by name, and a missing command is said", async () => {
    const s = await freshState();
    const [cmd, args] = inPrivateMounts(s, image, false, 8, [], "true", []);
    const bad = [...args];
    bad[3] = "-1";
    await assert.rejects(exec(cmd, bad), (e: { stderr: string }) => /bad disk size: -1/.test(e.stderr));
    await assert.rejects(exec(cmd, ["a"]), (e: { code: number; stderr: string }) => e.code === 2 && /usage: matchlock-private-mounts/.test(e.stderr));
    const [, oneBind] = inPrivateMounts(s, image, false, 8, [{ readonly: true, path: join(base, "ro-dir"), identity: "+1:2" }], "true", []);
    await assert.rejects(exec(cmd, oneBind), (e: { stderr: string }) => /bad host path identity \+1:2/.test(e.stderr));
    oneBind[6] = "RO";
    await assert.rejects(exec(cmd, oneBind), (e: { stderr: string }) => /bad mode RO \(ro or rw\)/.test(e.stderr));
    const [cmd3, args3] = inPrivateMounts(await freshState(), image, false, 8, [], join(base, "no-such-runsc"), []);
    await assert.rejects(exec(cmd3, args3), (e: { stderr: string }) => /cannot run .*no-such-runsc: No such file or directory/.test(e.stderr));
  });
});
