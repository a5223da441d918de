// Named volumes and extra disks on the engine of $MATCHLOCK_BACKEND: `matchlock volume` as
// upstream prints it, `run --disk` keeping data across sandboxes (and `volume cp` keeping owners
// and modes), the SDK's volume calls and withDisk, one sandbox per disk at a time, nothing left
// on the host (mounts, loop devices) after a sandbox, and a file system that survives the
// engine being killed mid-write.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { link as link_, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { Sandbox } from "../../src/sdk/index.js";
import { BACKEND, BUSYBOX, CLI, cli, eventually, firstVm, leftovers, newClient, setUpE2E } from "../helpers/e2e.js";

const execFileP = promisify(execFile);

/** Loop devices backed by `image` ("" when none): gVisor's disks are loop-mounted on the host. */
async function loopDevicesOf(image: string): Promise<string[]> {
  const { stdout } = await execFileP("losetup", ["-j", image]);
  return stdout.split("\n").filter(Boolean);
}

/** Host mounts of anything under the sandbox's state directory or of the image. */
async function hostMountsOf(text: string): Promise<string[]> {
  const { stdout } = await execFileP("cat", ["/proc/self/mountinfo"]);
  return stdout.split("\n").filter((l) => l.includes(text));
}

async function volumePathOf(name: string): Promise<string> {
  const r = await cli(["volume", "ls", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const v = (JSON.parse(r.stdout) as Array<{ name: string; path: string }>).find((x) => x.name === name);
  assert.ok(v, `volume ${name} is listed`);
  return v.path;
}

describe("volumes and extra disks", () => {
  let home: string;
  let scratch: string;
  before(async () => {
    home = await setUpE2E();
    scratch = await mkdtemp(join(tmpdir(), "matchlock-volumes-"));
  });
  after(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  test("volume create, ls, cp and rm print what upstream prints; bad names, sizes and disks are refused before anything boots", async () => {
    const created = await cli(["volume", "create", "alpha", "--size", "16"]);
    assert.equal(created.code, 0, created.stderr);
    assert.equal(created.stdout, "Created volume alpha (16 MB)\n");
    const json = await cli(["volume", "create", "beta", "--size", "16", "--json"]);
    assert.equal(json.code, 0, json.stderr);
    const beta = JSON.parse(json.stdout) as { name: string; size: string; path: string };
    assert.deepEqual(beta, { name: "beta", size: "16.0 MB", path: join(home, "volumes", "beta.ext4") });
    const table = await cli(["volume", "ls"]);
    assert.deepEqual(table.stdout.split("\n").filter(Boolean).map((l) => l.split(/\s{2,}/)), [["NAME", "SIZE"], ["alpha", "16.0 MB"], ["beta", "16.0 MB"]]);

    assert.equal((await cli(["volume", "cp", "alpha", "gamma"])).stdout, "Copied volume alpha to gamma\n");
    const onto = await cli(["volume", "cp", "alpha", "beta"]);
    assert.equal(onto.code, 1);
    assert.match(onto.stderr, /volume beta already exists/);
    assert.equal((await cli(["volume", "rm", "gamma"])).stdout, "Removed volume gamma\n");
    const missing = await cli(["volume", "rm", "gamma"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /named volume not found/);
    assert.match((await cli(["volume", "create", "../x"])).stderr, /invalid volume name/);
    assert.match((await cli(["volume", "create", "delta", "--size", "0"])).stderr, /invalid --size "0"/);
    assert.match((await cli(["volume", "create", "alpha"])).stderr, /volume alpha already exists/);

    const noVolume = await cli(["run", "--image", BUSYBOX, "--disk", "@nope:/data", "true"]);
    assert.equal(noVolume.code, 125);
    assert.match(noVolume.stderr, /named volume not found: nope/);
    const badPath = await cli(["run", "--image", BUSYBOX, "--disk", "@alpha:/data/../etc", "true"]);
    assert.match(badPath.stderr, /invalid extra disk config: invalid guest mount path "\/data\/\.\.\/etc"/);
    const overWorkspace = await cli(["run", "--image", BUSYBOX, "--disk", "@alpha:/workspace", "true"]);
    assert.match(overWorkspace.stderr, /\/workspace is a mount of this sandbox/);
    const notExt4 = join(scratch, "plain.img");
    await writeFile(notExt4, Buffer.alloc(64 * 1024));
    const plain = await cli(["run", "--image", BUSYBOX, "--disk", `${notExt4}:/data`, "true"]);
    assert.match(plain.stderr, /not an ext4 file system image/);
    if (BACKEND === "gvisor") {
      // The host's kernel would mount it: a file system that is not clean is refused first.
      assert.equal((await cli(["volume", "create", "broken", "--size", "16"])).code, 0);
      await execFileP("debugfs", ["-w", "-R", "set_inode_field <2> links_count 7", join(home, "volumes", "broken.ext4")]);
      const broken = await cli(["run", "--image", BUSYBOX, "--disk", "@broken:/data", "true"]);
      assert.match(broken.stderr, /is not a clean ext4 file system.*e2fsck -fy .*Inode 2 ref count is 7/);
      await cli(["volume", "rm", "broken"]);
    }
    const link = join(scratch, "alpha-link.ext4");
    await symlink(join(home, "volumes", "alpha.ext4"), link);
    const linked = await cli(["run", "--image", BUSYBOX, "--disk", `${link}:/b`, "true"]);
    assert.match(linked.stderr, /goes through the symbolic link .*alpha-link\.ext4/);
    const other = join(home, "volumes", "alpha-other-name.img"); // a hard link: the same file under another name
    await link_(join(home, "volumes", "alpha.ext4"), other);
    const twice = await cli(["run", "--image", BUSYBOX, "--disk", "@alpha:/a", "--disk", `${other}:/b`, "true"]);
    assert.match(twice.stderr, /the same file is attached twice to this sandbox/);
    await rm(other);
    assert.deepEqual((await cli(["list", "--json"])).stdout.trim(), "[]", "no refused run left a record");
    await cli(["volume", "rm", "beta"]);
  });

  test("run --disk: a file written in one sandbox is there in the next; volume cp keeps owners and modes; :ro is read-only", async () => {
    const write = await cli([
      "run", "--image", BUSYBOX, "--disk", "@alpha:/data", "--",
      "sh", "-c", "echo kept > /data/note && chown 1234:5678 /data/note && chmod 640 /data/note && mkdir -m 700 /data/dir",
    ]);
    assert.equal(write.code, 0, write.stderr);
    const copy = await cli(["volume", "cp", "alpha", "alpha-copy"]);
    assert.equal(copy.code, 0, copy.stderr);
    const read = await cli([
      "run", "--image", BUSYBOX, "--disk", "@alpha-copy:/mnt/copy:ro", "--",
      "sh", "-c", "cat /mnt/copy/note; stat -c '%a %u:%g' /mnt/copy/note /mnt/copy/dir; touch /mnt/copy/new 2>&1 || echo refused",
    ]);
    assert.equal(read.code, 0, read.stderr);
    const lines = read.stdout.trim().split("\n");
    assert.deepEqual([lines[0], lines[1], lines[2], lines.at(-1)], ["kept", "640 1234:5678", "700 0:0", "refused"]);
    assert.match(read.stdout, /Read-only file system/);
  });

  test("SDK: volumeCreate/List/Remove, withDisk; a disk in use is refused to a second sandbox and to volumeRemove; nothing is left after close", async () => {
    const client = newClient();
    const info = await client.volumeCreate("sdk-vol", 16);
    assert.equal(info.name, "sdk-vol");
    assert.equal(info.size, "16.0 MB");
    assert.ok(info.path.endsWith("sdk-vol.ext4"));
    assert.ok((await client.volumeList()).some((v) => v.name === "sdk-vol" && v.path === info.path));
    await assert.rejects(client.volumeCreate(" ", 16), /volume name is required/);
    await assert.rejects(client.volumeCreate("x", 0), /volume size must be > 0/);

    let vmId = "";
    try {
      vmId = await client.launch(new Sandbox(BUSYBOX).withDisk(info.path, "/mnt/vol"));
      const r = await client.exec("echo from-sdk > /mnt/vol/f && cat /mnt/vol/f && grep ' /mnt/vol ' /proc/mounts | cut -d' ' -f3");
      assert.equal(r.exitCode, 0, r.stderr);
      assert.match(r.stdout, /^from-sdk\n/);
      // gVisor loop-mounts the disk on the host (so the checks after close mean something); a micro-VM does not.
      if (BACKEND === "gvisor") assert.equal((await loopDevicesOf(info.path)).length, 1);
      else assert.equal(r.stdout.split("\n")[1], "ext4");

      const second = newClient();
      try {
        // Read-only too: the disk is attached read-write (read-only sandboxes may only share with each other).
        await assert.rejects(second.launch(new Sandbox(BUSYBOX).withDisk(info.path, "/data", { readonly: true })), (err: Error) => {
          assert.match(err.message, new RegExp(`in use by sandbox ${vmId} \\(read-write\\)`));
          return true;
        });
      } finally {
        await second.close();
        await second.remove();
      }
      await assert.rejects(client.volumeRemove("sdk-vol"), /matchlock volume rm sdk-vol: volume sdk-vol is in use by sandbox/);
    } finally {
      await client.close();
      await client.remove();
    }
    assert.deepEqual(await eventually(() => loopDevicesOf(info.path)), [], "the disk's loop device is detached");
    assert.deepEqual(await eventually(() => hostMountsOf(vmId)), [], "no mount of the sandbox is left on the host");
    assert.deepEqual(await eventually(() => leftovers(vmId, home)), []);
    await client.volumeRemove("sdk-vol");
    assert.ok(!(await client.volumeList()).some((v) => v.name === "sdk-vol"));
  });

  test("the engine killed mid-write (SIGKILL) leaves a mountable, fsck-clean volume that the next sandbox attaches", async () => {
    assert.equal((await cli(["volume", "create", "crash", "--size", "32"])).code, 0);
    const image = await volumePathOf("crash");
    await mkdir(join(home, "vms"), { recursive: true });
    const watcher = firstVm(home);
    const engine = spawn(process.execPath, ["--", CLI, "run", "--image", BUSYBOX, "--disk", "@crash:/data", "--",
      "sh", "-c", "i=0; while :; do dd if=/dev/urandom of=/data/f$i bs=64k count=8 2>/dev/null; echo w$i; i=$((i+1)); [ $i -lt 20 ] || i=0; done"],
    { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    await new Promise<void>((resolve, reject) => {
      engine.stdout.on("data", (d: Buffer) => {
        out += d;
        if (out.includes("w3\n")) resolve();
      });
      engine.once("close", () => reject(new Error(`the writer ended before writing: ${out}`)));
    });
    const vmId = await watcher.id;
    watcher.stop();
    engine.kill("SIGKILL");
    assert.deepEqual(await eventually(() => leftovers(vmId, home)), []);
    assert.deepEqual(await eventually(() => loopDevicesOf(image)), [], "the loop device went with the sandbox");
    assert.deepEqual(await eventually(() => hostMountsOf(vmId)), [], "no mount of the sandbox is left on the host");

    const mnt = join(scratch, "mnt");
    await mkdir(mnt, { recursive: true });
    await execFileP("mount", ["-o", "loop", image, mnt]); // replays the journal, as any mount would
    try {
      const { stdout } = await execFileP("ls", [mnt]);
      assert.match(stdout, /lost\+found/);
    } finally {
      await execFileP("umount", [mnt]);
    }
    const fsck = await execFileP("e2fsck", ["-fn", image]).then(() => 0, (e: { code: number; stdout: string }) => `${e.code}: ${e.stdout}`);
    assert.equal(fsck, 0, "e2fsck finds the file system clean");

    // The killed engine's lock is stale: the next sandbox takes the disk.
    const next = await cli(["run", "--image", BUSYBOX, "--disk", "@crash:/data", "--", "ls", "/data"]);
    assert.equal(next.code, 0, next.stderr);
    assert.match(next.stdout, /lost\+found/);
    await cli(["rm", vmId]);
    assert.equal((await cli(["volume", "rm", "crash"])).code, 0);
  });
});
