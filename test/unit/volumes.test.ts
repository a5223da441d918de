// Extra disks before anything boots: `run --disk` specs, the checks of a disk image (ext4, a
// journal that needs recovery on a read-only disk), and the SDK's withDisk on the wire.
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { parseDisk } from "../../src/cli/disk-options.js";
import { checkExtraDisks } from "../../src/engine/disks/extra-disks.js";
import { createParamsSchema, mergeDefaults, type SandboxConfig } from "../../src/engine/sandbox/create-config.js";
import { Sandbox } from "../../src/sdk/index.js";
import { toCreateParams } from "../../src/sdk/wire.js";
import { volumeCreate, volumeList, volumeRemove } from "../../src/sdk/volumes.js";
import { diskHolders, lockDisk, unlockDisks } from "../../src/engine/disks/disk-locks.js";
import { createVmRecord, markStopped } from "../../src/engine/sandbox/state.js";
import { paths } from "../../src/engine/paths.js";

let dir: string;
const savedHome = process.env.MATCHLOCK_HOME;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "matchlock-volumes-unit-"));
  process.env.MATCHLOCK_HOME = dir;
});
after(async () => {
  if (savedHome === undefined) delete process.env.MATCHLOCK_HOME;
  else process.env.MATCHLOCK_HOME = savedHome;
  await rm(dir, { recursive: true, force: true });
});

/** A file that looks like ext4 to the superblock check: the magic, and optionally the journal's recover flag. */
async function fakeExt4(name: string, needsRecovery: boolean): Promise<string> {
  const buf = Buffer.alloc(4096);
  buf.writeUInt16LE(0xef53, 1024 + 56);
  buf.writeUInt32LE(needsRecovery ? 0x4 | 0x2 : 0x2, 1024 + 96);
  const path = join(dir, name);
  await writeFile(path, buf);
  return path;
}

function config(disks: unknown[]): SandboxConfig {
  return mergeDefaults(createParamsSchema.parse({ image: "a", extra_disks: disks }));
}

test("--disk: @NAME is the named volume's image, HOST a host image (relative to the current directory), :ro read-only", async () => {
  await mkdir(join(dir, "volumes"), { recursive: true });
  await writeFile(join(dir, "volumes", "data.ext4"), "");
  assert.deepEqual(parseDisk("@data:/mnt/data"), { host_path: join(dir, "volumes", "data.ext4"), guest_mount: "/mnt/data" });
  assert.deepEqual(parseDisk("@data:/mnt/data:ro"), { host_path: join(dir, "volumes", "data.ext4"), guest_mount: "/mnt/data", readonly: true });
  assert.deepEqual(parseDisk("disks/a.img:/a:rw"), { host_path: resolve("disks/a.img"), guest_mount: "/a" });
  assert.throws(() => parseDisk("@nope:/d"), /named volume not found: nope/);
  assert.throws(() => parseDisk("@../x:/d"), /invalid volume name/);
  for (const spec of ["/a.img", "/a.img:/d:rx", ":/d", "/a.img:", "/a.img:/d:ro:x"]) {
    assert.throws(() => parseDisk(spec), /invalid disk .*: use @VOLUME:GUEST_PATH\[:ro\]/, spec);
  }
});

test("a disk must be an ext4 image the engine can use; a read-only one must not need journal recovery", async () => {
  const clean = await fakeExt4("clean.img", false);
  const dirty = await fakeExt4("dirty.img", true);
  await checkExtraDisks(config([{ host_path: clean, guest_mount: "/d", readonly: true }]));
  await checkExtraDisks(config([{ host_path: dirty, guest_mount: "/d" }]));
  await assert.rejects(checkExtraDisks(config([{ host_path: dirty, guest_mount: "/d", readonly: true }])), /its journal needs recovery .*attach it read-write once/);
  const zeros = join(dir, "zeros.img");
  await writeFile(zeros, Buffer.alloc(4096));
  await assert.rejects(checkExtraDisks(config([{ host_path: zeros, guest_mount: "/d" }])), /not an ext4 file system image/);
  await assert.rejects(checkExtraDisks(config([{ host_path: join(dir, "missing.img"), guest_mount: "/d" }])), /no such file/);
  await assert.rejects(checkExtraDisks(config([{ host_path: dir, guest_mount: "/d" }])), /not a regular file/);
  await assert.rejects(checkExtraDisks(config([{ host_path: clean, guest_mount: "/workspace" }])), /\/workspace is a mount of this sandbox/);
  // A disk may not be a parent of a mount either (it would hide it on one engine only).
  await assert.rejects(checkExtraDisks({ ...config([{ host_path: clean, guest_mount: "/w" }]), workspace: "/w/x" }), /\/w\/x is a mount of this sandbox/);
});

test("SDK: withDisk sends extra_disks, host paths resolved, readonly only when set", () => {
  const opts = new Sandbox("img").withDisk("v.ext4", "/data").withDisk("/abs.ext4", "/ro/", { readonly: true }).options();
  assert.deepEqual(toCreateParams(opts).extra_disks, [
    { host_path: resolve("v.ext4"), guest_mount: "/data" },
    { host_path: "/abs.ext4", guest_mount: "/ro", readonly: true },
  ]);
  assert.throws(() => new Sandbox("img").withDisk("/a", "data"), /extra disk guestMount must be an absolute guest path/);
  assert.equal(toCreateParams(new Sandbox("img").options()).extra_disks, undefined);
});

test("SDK volume calls: the CLI's argv, its JSON read as upstream's SDK reads it, its errors named by command", async () => {
  const engine = join(dir, "fake-engine");
  const argsFile = join(dir, "args");
  await writeFile(engine, `#!/bin/sh
echo "$@" >> '${argsFile}'
case "$2" in
  create) echo '{"path": " /v/x.ext4 "}' ;;
  ls) echo '[{"name": "a", "size": "1.0 MB", "path": "/v/a.ext4"}]' ;;
  rm) echo "Error: named volume not found: $3" >&2; exit 1 ;;
esac
`);
  await chmod(engine, 0o755);
  assert.deepEqual(await volumeCreate([engine], " x ", 16), { name: "x", size: "16.0 MB", path: "/v/x.ext4" });
  assert.deepEqual(await volumeList([engine]), [{ name: "a", size: "1.0 MB", path: "/v/a.ext4" }]);
  await assert.rejects(volumeRemove([engine], "nope"), /^MatchlockError: matchlock volume rm nope: named volume not found: nope$/);
  assert.deepEqual((await readFile(argsFile, "utf8")).trim().split("\n"), ["volume create x --size 16 --json", "volume ls --json", "volume rm nope"]);
  await assert.rejects(volumeCreate([engine], "  ", 16), /volume name is required/);
  await assert.rejects(volumeCreate([engine], "x", Number.NaN), /volume size must be > 0/);
  await assert.rejects(volumeRemove([engine], ""), /volume name is required/);
});

test("disk holds: read-only sandboxes share a disk, a read-write one has it alone; a stopped sandbox's hold is stale", async () => {
  const disk = await fakeExt4("held.img", false);
  const [a, b, c] = ["vm-0000000a", "vm-0000000b", "vm-0000000c"];
  for (const id of [a, b, c]) await createVmRecord(id, { image: "x" }); // running, owned by this process
  await lockDisk(a, disk, true, "disk");
  await lockDisk(b, disk, true, "disk");
  assert.deepEqual((await diskHolders(disk)).map((h) => h.vmId).sort(), [a, b]);
  await assert.rejects(lockDisk(c, disk, false, "disk"), /disk is in use by sandbox vm-0000000[ab] \(read-only\)/);
  await assert.rejects(lockDisk(a, disk, true, "disk"), /the same file is attached twice to this sandbox/);
  await unlockDisks(a, [disk]);
  await markStopped(b); // its engine stopped it without unlocking (killed): stale
  await lockDisk(c, disk, false, "disk");
  await assert.rejects(lockDisk(a, disk, true, "disk"), /in use by sandbox vm-0000000c \(read-write\)/);
  await unlockDisks(c, [disk]);
  assert.deepEqual(await diskHolders(disk), []);
  await unlockDisks(b, [disk]);
  assert.deepEqual(await readdir(paths.diskLocks()), [], "nothing is left once no sandbox holds the disk");
});
