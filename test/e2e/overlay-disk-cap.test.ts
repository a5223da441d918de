// End to end: the root file system's writes are capped at the sandbox's disk size on both engines
// (ENOSPC past it), and an overlay mount's snapshot lives on a disk of that size, not on the
// host's disk at large. A guest writing far past its disk size into an overlay mount gets a full
// disk (ENOSPC), the host's disk use for the sandbox stays near that size, the sandbox goes on
// working, and the host directory under the overlay is never touched.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Sandbox, type Client } from "../../src/sdk/index.js";
import { BACKEND, BUSYBOX, newClient, setUpE2E } from "../helpers/e2e.js";

const DISK_MB = 16;
/** What the guest tries to write: far past the disk size. */
const WRITE_MB = 160;
const MiB = 1024 * 1024;

/** Bytes the files under `dir` take on the host's disk (allocated blocks, sparse files as they are). */
async function hostDiskUse(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    const p = join(e.parentPath, e.name);
    if (e.isFile()) total += (await stat(p)).blocks * 512;
  }
  return total;
}

describe(`overlay mounts are capped at the disk size, on ${BACKEND}`, () => {
  let home: string;
  let lower: string;
  let client: Client;
  let vmDir: string;

  before(async () => {
    home = await setUpE2E();
    lower = await mkdtemp(join(tmpdir(), "matchlock-overlay-cap-"));
    await writeFile(join(lower, "seed.txt"), "seed");
    client = newClient();
    const id = await client.launch(new Sandbox(BUSYBOX).withDiskSize(DISK_MB).mountOverlay("/ov", lower));
    vmDir = join(home, "vms", id);
  });
  after(async () => {
    await client?.close();
    await client?.remove();
    await rm(lower, { recursive: true, force: true });
  });

  test("writing past the disk size into an overlay mount fails with ENOSPC, and the host's disk use stays bounded", async () => {
    const r = await client.exec(`dd if=/dev/zero of=/ov/big bs=1M count=${WRITE_MB} 2>&1; echo "status $?"`);
    assert.match(r.stdout, /No space left on device|Disk quota exceeded/, r.stdout);
    assert.match(r.stdout, /status [1-9]/);
    const written = Number((await client.exec("wc -c < /ov/big")).stdout.trim());
    assert.ok(written < (DISK_MB + 16) * MiB, `the guest wrote ${written} bytes into a ${DISK_MB} MB disk`);
    const used = await hostDiskUse(vmDir);
    assert.ok(used < (DISK_MB + 32) * MiB, `the sandbox takes ${used} bytes of host disk for a ${DISK_MB} MB disk`);
    // The disk full, the sandbox works on: freeing space frees it.
    const again = await client.exec("rm /ov/big && echo fine > /ov/after && cat /ov/seed.txt /ov/after");
    assert.equal(again.stdout, "seedfine\n", again.stderr);
    assert.deepEqual(await readdir(lower), ["seed.txt"]);
  });

  test("writing past the disk size into the root file system fails with ENOSPC, and the sandbox works on", async () => {
    const r = await client.exec(`dd if=/dev/zero of=/big bs=1M count=${WRITE_MB} 2>&1; echo "status $?"`);
    assert.match(r.stdout, /No space left on device/, r.stdout);
    assert.match(r.stdout, /status [1-9]/);
    const written = Number((await client.exec("wc -c < /big")).stdout.trim());
    assert.ok(written < (DISK_MB + 16) * MiB, `the guest wrote ${written} bytes into a ${DISK_MB} MB disk`);
    const again = await client.exec("rm /big && echo fine > /after && cat /after");
    assert.equal(again.stdout, "fine\n", again.stderr);
  });

  test("the snapshot's disk is gone with the sandbox", async () => {
    await client.close();
    assert.equal(existsSync(join(vmDir, "overlay")), false);
    assert.equal(existsSync(join(vmDir, "overlay.ext4")), false);
  });
});
