// End to end: file operations, mounts and the builder options on real sandboxes (gVisor or
// micro-VM, from $MATCHLOCK_BACKEND).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, readdir, stat, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { RPCError, Sandbox, type Client } from "../../src/sdk/index.js";
import { ImageStore } from "../../src/engine/image/store.js";
import { rootImagePath } from "../../src/engine/backends/microvm/root-image.js";
import { BACKEND, BUSYBOX, newClient, setUpE2E } from "../helpers/e2e.js";

describe(`files on a ${BACKEND} sandbox`, () => {
  let client: Client;

  before(async () => {
    await setUpE2E();
    client = newClient();
    await client.launch(new Sandbox(BUSYBOX));
  });
  after(async () => {
    await client.close();
    await client.remove();
  });

  test("write, read and list with modes (the seed README's file example)", async () => {
    await client.writeFile("/workspace/hello.txt", "Hello, world!");
    await client.writeFile("/workspace/script.sh", "#!/bin/sh\necho script-output\n", { mode: 0o755 });
    assert.equal((await client.readFile("/workspace/hello.txt")).toString(), "Hello, world!");
    assert.equal((await client.exec("/workspace/script.sh")).stdout, "script-output\n");
    assert.equal((await client.exec("stat -c %a /workspace/script.sh /workspace/hello.txt")).stdout, "755\n644\n");

    const files = await client.listFiles("/workspace");
    const byName = new Map(files.map((f) => [f.name, f]));
    assert.equal(byName.get("hello.txt")?.size, 13);
    assert.equal(byName.get("hello.txt")?.isDir, false);
    assert.equal(byName.get("hello.txt")?.mode, 0o644);
    assert.equal(byName.get("script.sh")?.mode, 0o755);
  });

  test("directories are listed as directories with Go's mode bits", async () => {
    await client.exec("mkdir -p /workspace/sub && chmod 755 /workspace/sub");
    const sub = (await client.listFiles("/workspace")).find((f) => f.name === "sub");
    assert.equal(sub?.isDir, true);
    assert.equal(sub?.mode, 2147484141); // 1<<31 | 0755, as upstream engines send it
  });

  test("writes go anywhere in the guest, create parents, and truncate", async () => {
    await client.writeFile("/opt/deep/er/file.txt", "a long first version");
    await client.writeFile("/opt/deep/er/file.txt", "short");
    assert.equal((await client.readFile("/opt/deep/er/file.txt")).toString(), "short");
    assert.equal((await client.exec("cat /opt/deep/er/file.txt")).stdout, "short");
  });

  test("changes to the image's files stay in the sandbox", async () => {
    await client.writeFile("/etc/marker-from-guest", "x");
    await client.exec("echo changed >> /etc/passwd; rm -f /bin/ls");
    const image = await new ImageStore().resolve(BUSYBOX);
    assert.ok(image);
    assert.equal(existsSync(join(image.rootfs, "etc", "marker-from-guest")), false);
    assert.ok(!(await readFile(join(image.rootfs, "etc", "passwd"), "utf8")).includes("changed"));
    assert.ok(existsSync(join(image.rootfs, "bin", "ls")));
  });

  test("a 100 KB file and an empty file round-trip", async () => {
    const big = "abcdefghij".repeat(10000);
    await client.writeFile("/workspace/big.txt", big);
    assert.equal((await client.readFile("/workspace/big.txt")).toString(), big);
    await client.writeFile("/workspace/empty", "");
    assert.equal((await client.readFile("/workspace/empty")).length, 0);
  });

  test("a write too large for one message is streamed in chunks instead", async () => {
    const big = Buffer.alloc(8 * 1024 * 1024, 0x5a);
    await client.writeFile("/tmp/too-big", big);
    assert.equal((await client.exec("wc -c < /tmp/too-big")).stdout.trim(), String(big.length));
    assert.deepEqual(await client.readFile("/tmp/too-big"), big);
  });

  test("file errors are file errors", async () => {
    for (const call of [
      () => client.readFile("/workspace/missing.txt"),
      () => client.readFile("/etc"),
      () => client.listFiles("/nope"),
      () => client.readFile("relative/path"),
    ]) {
      await assert.rejects(call(), (err: unknown) => err instanceof RPCError && err.isFileError());
    }
  });
});

describe("mounts and builder options", () => {
  let client: Client;
  let rw: string;
  let ro: string;
  let ov: string;

  before(async () => {
    await setUpE2E();
    const base = await mkdtemp(join(tmpdir(), "matchlock-mounts-"));
    [rw, ro, ov] = [join(base, "rw"), join(base, "ro"), join(base, "ov")];
    for (const d of [rw, ro, ov]) await mkdir(d);
    await writeFile(join(ro, "config.txt"), "from-host-ro");
    await writeFile(join(ov, "data.txt"), "from-host-ov");
    client = newClient();
    await client.launch(
      new Sandbox(BUSYBOX)
        .withCPUs(1)
        .withMemory(256)
        .withWorkspace("/work")
        .mountHostDir("/work/src", rw)
        .mountHostDirReadonly("/work/config", ro)
        .mountMemory("/work/tmp")
        .mountOverlay("/work/data", ov)
        .addSecret("API_KEY", "sk-real-value-123", "api.example.com"),
    );
  });
  after(async () => {
    await client.close();
    await client.remove();
  });

  test("the workspace moved and is the default cwd", async () => {
    assert.equal((await client.exec("pwd")).stdout, "/work\n");
  });

  test("a host dir is shared both ways", async () => {
    await client.exec("echo from-guest > /work/src/g.txt");
    assert.equal(await readFile(join(rw, "g.txt"), "utf8"), "from-guest\n");
    await writeFile(join(rw, "h.txt"), "from-host");
    assert.equal((await client.exec("cat /work/src/h.txt")).stdout, "from-host");
  });

  test("guest root cannot plant a device node in a shared host dir (nor, on the micro-VM, a setuid binary)", async () => {
    // Each may fail inside (gVisor refuses mknod) or succeed as metadata only (9p mapped-xattr):
    // what matters is what the host sees.
    await client.exec("mknod /work/src/disk b 8 0; cp /bin/busybox /work/src/suid; chmod 4755 /work/src/suid; true");
    const names = await readdir(rw);
    if (names.includes("disk")) assert.ok(!(await stat(join(rw, "disk"))).isBlockDevice(), "a block device appeared on the host");
    assert.ok(names.includes("suid"), "the copy itself is an ordinary file write");
    // gVisor passes the guest's chmod 4755 through to the host file today (a known gap of that
    // engine, reported separately); the micro-VM keeps guest modes in xattrs.
    if (BACKEND === "microvm") assert.equal((await stat(join(rw, "suid"))).mode & 0o4000, 0, "the setuid bit reached the host");
  });

  test("a single host file mounts on both engines: read-only, read-write (the host sees the write) and as an overlay (it does not)", async () => {
    const file = join(ro, "config.txt");
    const rwFile = join(await mkdtemp(join(tmpdir(), "single-file-")), "state.txt");
    await writeFile(rwFile, "host-state");
    await using other = newClient();
    await other.launch(new Sandbox(BUSYBOX)
      .mountHostDirReadonly("/etc/host-config.txt", file)
      .mountHostDir("/var/state.txt", rwFile)
      .mountOverlay("/opt/copy.txt", file));
    assert.equal((await other.exec("cat /etc/host-config.txt /var/state.txt /opt/copy.txt")).stdout, "from-host-rohost-statefrom-host-ro");
    const denied = await other.exec("echo x > /etc/host-config.txt");
    assert.match(denied.stderr, /Read-only file system/);
    assert.equal((await other.exec("echo guest-state > /var/state.txt && echo changed > /opt/copy.txt && cat /opt/copy.txt")).stdout, "changed\n");
    assert.equal(await readFile(rwFile, "utf8"), "guest-state\n");
    assert.equal(await readFile(file, "utf8"), "from-host-ro");
    // Nothing beside the file is shared or can be made there.
    assert.deepEqual((await other.listFiles("/etc")).filter((f) => f.name === "host-config.txt").map((f) => f.isDir), [false]);
  });

  test("a read-only host dir cannot be written, by exec or by writeFile", async () => {
    assert.equal((await client.exec("cat /work/config/config.txt")).stdout, "from-host-ro");
    const r = await client.exec("echo x > /work/config/new.txt");
    assert.notEqual(r.exitCode, 0);
    assert.match(r.stderr, /Read-only file system/);
    await assert.rejects(client.writeFile("/work/config/new.txt", "x"), (err: unknown) => err instanceof RPCError && err.isFileError());
    assert.deepEqual(await readdir(ro), ["config.txt"]);
  });

  test("an overlay shows the host files but never changes them", async () => {
    assert.equal((await client.exec("cat /work/data/data.txt")).stdout, "from-host-ov");
    await client.exec("echo changed > /work/data/data.txt; echo new > /work/data/new.txt");
    assert.equal((await client.exec("cat /work/data/data.txt")).stdout, "changed\n");
    assert.equal(await readFile(join(ov, "data.txt"), "utf8"), "from-host-ov");
    assert.deepEqual(await readdir(ov), ["data.txt"]);
  });

  test("a memory mount is a tmpfs", async () => {
    assert.match((await client.exec("grep ' /work/tmp ' /proc/mounts")).stdout, /tmpfs/);
  });

  test("memory and cpu limits are applied", async () => {
    const mem = (await client.exec("grep MemTotal /proc/meminfo")).stdout;
    const kb = Number(/(\d+)/.exec(mem)?.[1]);
    assert.ok(kb > 200 * 1024 && kb <= 256 * 1024, mem);
  });

  test("a secret is only a placeholder inside", async () => {
    const v = (await client.exec("echo $API_KEY")).stdout.trim();
    assert.match(v, /^SANDBOX_SECRET_[0-9a-f]{32}$/);
    const env = (await client.exec("cat /proc/1/environ /proc/self/environ | tr '\\0' '\\n'")).stdout;
    assert.ok(!env.includes("sk-real-value-123"));
  });
});

// What only the micro-VM engine does: gVisor keeps writes in memory without a size cap.
if (BACKEND === "microvm") {
  describe("micro-VM root file system", () => {
    before(async () => {
      await setUpE2E();
    });

    test("disk_size_mb caps root file system writes, and the shared base image never changes", async () => {
      const image = await new ImageStore().resolve(BUSYBOX);
      assert.ok(image);
      const base = rootImagePath(image.rootfs);
      const digest = async () => createHash("sha256").update(await readFile(base)).digest("hex");
      await using client = newClient();
      await client.launch(new Sandbox(BUSYBOX).withMemory(512).withDiskSize(64));
      const before = await digest();
      const r = await client.exec("dd if=/dev/zero of=/big bs=1M count=100 2>&1; echo rc=$?; rm -f /etc/passwd; echo x > /bin/new");
      assert.match(r.stdout, /No space left on device/);
      assert.match(r.stdout, /rc=1/);
      assert.equal((await client.exec("ls /etc/passwd /bin/new 2>/dev/null")).stdout, "/bin/new\n");
      await client.close();
      assert.equal(await digest(), before);
    });
  });
}
