// End to end: what each mount kind promises beyond the basics in sdk-files.test.ts — host and
// guest writing one host_fs mount at the same time, read-only mounts that nothing can change,
// memory mounts that count against the sandbox's memory, overlays that vanish at close, both
// names of the host mount type, and the engine's own refusal of every bad mount.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { appendFile, chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { RPCError, Sandbox, type Client } from "../../src/sdk/index.js";
import { paths } from "../../src/engine/paths.js";
import { BACKEND, BUSYBOX, newClient, setUpE2E } from "../helpers/e2e.js";
import { RawSession } from "../helpers/raw-rpc.js";

const FILES = 150;
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");
/** Distinct, checkable content per writer and index, 4 KB each. */
const content = (who: string, i: number) => `${who}-${i}-`.padEnd(4096, ".");

describe(`mount kinds on ${BACKEND}`, () => {
  let client: Client;
  let base: string;
  let rw: string;
  let ro: string;

  before(async () => {
    await setUpE2E();
    base = await mkdtemp(join(tmpdir(), "matchlock-mount-kinds-"));
    [rw, ro] = [join(base, "rw"), join(base, "ro")];
    await mkdir(rw);
    await mkdir(join(ro, "sub"), { recursive: true });
    await writeFile(join(ro, "keep.txt"), "original");
    await writeFile(join(ro, "sub", "deep.txt"), "deep");
    await chmod(join(ro, "keep.txt"), 0o644);
    client = newClient();
    await client.launch(
      new Sandbox(BUSYBOX)
        .withMemory(256)
        .mount("/workspace/rw", { type: "host_fs", hostPath: rw })
        .mount("/workspace/ro", { type: "host_fs", hostPath: ro, readonly: true })
        .mount("/data", { type: "real_fs", hostPath: rw })
        .mountMemory("/workspace/mem"),
    );
  });
  after(async () => {
    await client?.close();
    await client?.remove();
    await rm(base, { recursive: true, force: true });
  });

  test("host_fs and real_fs are the same host directory mount", async () => {
    await writeFile(join(rw, "both.txt"), "one dir");
    assert.equal((await client.exec("cat /workspace/rw/both.txt /data/both.txt")).stdout, "one dirone dir");
    await rm(join(rw, "both.txt"));
  });

  test("host and guest write one host_fs mount at once: every file and every appended line arrives whole", async () => {
    // Guest: its own files plus appends to its log, by exec; more files by writeFile.
    // Host: its own files plus appends to its log. All at the same time. (Appends from both
    // sides to ONE file are not atomic across the boundary: the guest's O_APPEND offset comes
    // from its view of the size, as over NFS. docs/limits.md says so; this test does not pretend.)
    const guestExec = client.exec(
      `cd /workspace/rw && i=0; while [ $i -lt ${FILES} ]; do ` +
      `printf '%-4096s' "guest-$i-" | tr ' ' . > g-$i; ` +
      `echo "guest line $i end" >> guest.log; i=$((i+1)); done; echo finished`,
    );
    const guestRpc = (async () => {
      for (let i = 0; i < FILES; i++) await client.writeFile(`/workspace/rw/r-${i}`, content("rpc", i));
    })();
    const host = (async () => {
      for (let i = 0; i < FILES; i++) {
        await writeFile(join(rw, `h-${i}`), content("host", i));
        await appendFile(join(rw, "host.log"), `host line ${i} end\n`);
        if (i % 10 === 0) await new Promise((r) => setTimeout(r, 2)); // let the guest interleave
      }
    })();
    const [r] = await Promise.all([guestExec, guestRpc, host]);
    assert.equal(r.stdout, "finished\n", r.stderr);

    // The host sees every guest file whole.
    for (let i = 0; i < FILES; i++) {
      assert.equal(await readFile(join(rw, `g-${i}`), "utf8"), content("guest", i), `g-${i} on the host`);
      assert.equal(await readFile(join(rw, `r-${i}`), "utf8"), content("rpc", i), `r-${i} on the host`);
    }
    // The guest sees every host file whole.
    const sums = (await client.exec("cd /workspace/rw && sha256sum h-*")).stdout;
    const got = new Map(sums.trim().split("\n").map((l) => [l.split(/\s+/)[1]!, l.split(/\s+/)[0]!]));
    for (let i = 0; i < FILES; i++) assert.equal(got.get(`h-${i}`), sha256(content("host", i)), `h-${i} in the guest`);
    // Both logs are whole and both sides see the same bytes: nothing lost, doubled or torn.
    for (const side of ["host", "guest"]) {
      const log = await readFile(join(rw, `${side}.log`), "utf8");
      assert.equal((await client.exec(`cat /workspace/rw/${side}.log`)).stdout, log, `${side}.log seen alike`);
      assert.deepEqual(log.trimEnd().split("\n"), [...Array(FILES).keys()].map((i) => `${side} line ${i} end`));
    }
    const listed = new Set((await client.listFiles("/workspace/rw")).map((f) => f.name));
    for (const name of (await readdir(rw))) assert.ok(listed.has(name), `${name} is missing from listFiles`);
  });

  test("a read-only host mount: every kind of write fails with EROFS or a file error, and the host directory is unchanged", async () => {
    const before_ = await treeOf(ro);
    const attempts = [
      "echo x > /workspace/ro/new.txt", "echo x >> /workspace/ro/keep.txt", "rm /workspace/ro/keep.txt",
      "mv /workspace/ro/keep.txt /workspace/ro/moved.txt", "chmod 777 /workspace/ro/keep.txt", "touch /workspace/ro/keep.txt",
      "mkdir /workspace/ro/newdir", "rmdir /workspace/ro/sub", "ln -s /etc /workspace/ro/link", "truncate -s 0 /workspace/ro/sub/deep.txt",
    ];
    for (const cmd of attempts) {
      const r = await client.exec(cmd);
      assert.notEqual(r.exitCode, 0, cmd);
      assert.match(r.stderr, /Read-only file system/, `${cmd}: ${r.stderr}`);
    }
    for (const p of ["/workspace/ro/new.txt", "/workspace/ro/keep.txt", "/workspace/ro/sub/deep.txt", "/workspace/ro/newdir/x"]) {
      await assert.rejects(client.writeFile(p, "x"), (err: unknown) => err instanceof RPCError && err.isFileError() && /read-only/i.test(err.message), p);
    }
    assert.equal((await client.readFile("/workspace/ro/keep.txt")).toString(), "original");
    assert.deepEqual(await treeOf(ro), before_);
  });

  test("a memory mount is counted against the sandbox's memory and capped below it", async () => {
    const shmem = async () => Number(/Shmem:\s+(\d+)/.exec((await client.exec("cat /proc/meminfo")).stdout)?.[1]);
    const before_ = await shmem();
    const w = await client.exec("dd if=/dev/zero of=/workspace/mem/64m bs=1M count=64 2>&1");
    assert.equal(w.exitCode, 0, w.stdout);
    const grew = (await shmem()) - before_;
    assert.ok(grew >= 60 * 1024, `64 MB in the memory mount raised Shmem by only ${grew} kB`);
    // Filling it past the sandbox's memory is an ordinary ENOSPC, not a killed sandbox.
    const full = await client.exec("dd if=/dev/zero of=/workspace/mem/big bs=1M count=400 2>&1; echo rc=$?");
    assert.match(full.stdout, /No space left on device/);
    assert.match(full.stdout, /rc=1/);
    const used = Number((await client.exec("du -sk /workspace/mem")).stdout.split(/\s/)[0]);
    assert.ok(used <= 256 * 1024, `the memory mount holds ${used} kB in a 256 MB sandbox`);
    assert.equal((await client.exec("rm /workspace/mem/big /workspace/mem/64m && echo alive")).stdout, "alive\n");
  });
});

describe(`overlay and memory mounts vanish at close on ${BACKEND}`, () => {
  before(async () => {
    await setUpE2E();
  });

  test("changes in an overlay never reach the host, are gone at close, and a new sandbox starts from the host's files", async () => {
    const host = await mkdtemp(join(tmpdir(), "matchlock-overlay-"));
    await mkdir(join(host, "sub"));
    await writeFile(join(host, "a.txt"), "host a");
    await writeFile(join(host, "sub", "b.txt"), "host b");
    const before_ = await treeOf(host);
    const sandbox = () => new Sandbox(BUSYBOX).mountOverlay("/workspace/ov", host).mountMemory("/workspace/mem");
    try {
      const first = newClient();
      await first.launch(sandbox());
      await first.exec("cd /workspace/ov && echo changed > a.txt && rm sub/b.txt && mkdir new && echo n > new/n.txt && echo m > /workspace/mem/m.txt");
      await first.writeFile("/workspace/ov/rpc.txt", "rpc");
      assert.equal((await first.exec("cat /workspace/ov/a.txt /workspace/ov/rpc.txt")).stdout, "changed\nrpc");
      assert.deepEqual(await treeOf(host), before_, "an overlay change reached the host");
      const vmId = first.vmId!;
      await first.close();
      assert.equal(existsSync(join(paths.vm(vmId), "overlay")), false, "the overlay's copy outlived close");
      await first.remove();

      await using second = newClient();
      await second.launch(sandbox());
      assert.equal((await second.exec("cat /workspace/ov/a.txt /workspace/ov/sub/b.txt")).stdout, "host ahost b");
      assert.equal((await second.exec("ls /workspace/ov/new /workspace/ov/rpc.txt /workspace/mem/m.txt 2>&1 | wc -l")).stdout.trim(), "3");
      assert.equal((await second.exec("ls -A /workspace/mem")).stdout, "");
      assert.deepEqual(await treeOf(host), before_);
    } finally {
      await rm(host, { recursive: true, force: true });
    }
  });
});

describe("the engine refuses bad mounts, each with a clear error", () => {
  let s: RawSession;
  let existing: string;

  before(async () => {
    await setUpE2E();
    existing = await mkdtemp(join(tmpdir(), "matchlock-badmount-"));
    s = new RawSession();
  });
  after(async () => {
    s.proc.kill("SIGKILL");
    await rm(existing, { recursive: true, force: true });
  });

  test("guest paths, host paths and types", async () => {
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ["workspace/x", { type: "memory" }, /must be an absolute path/],
      ["/workspace/../etc", { type: "memory" }, /normalised/],
      ["/workspace//x", { type: "memory" }, /normalised/],
      ["/workspace/x/", { type: "memory" }, /normalised/],
      ["/", { type: "memory" }, /cannot be "\/"/],
      ["/proc", { type: "memory" }, /cannot be at or under \/proc/],
      ["/sys/kernel", { type: "host_fs", host_path: existing }, /cannot be at or under \/sys/],
      ["/dev", { type: "memory" }, /cannot be at or under \/dev/],
      ["/data", { type: "host_fs" }, /host_path is required/],
      ["/data", { type: "real_fs", host_path: "relative/dir" }, /host_path must be absolute/],
      ["/data", { type: "host_fs", host_path: join(existing, "missing") }, /host path does not exist/],
      ["/data", { type: "overlay", host_path: join(existing, "missing") }, /host path does not exist/],
      ["/data", { type: "nfs", host_path: existing }, /unknown type "nfs"/],
    ];
    let id = 100;
    for (const [guest, mount, message] of cases) {
      const r = await s.call("create", { image: BUSYBOX, vfs: { mounts: { [guest]: mount } } }, id++);
      assert.equal(r.error?.code, -32602, `${guest} ${JSON.stringify(mount)}: ${JSON.stringify(r)}`);
      assert.match(r.error.message, message, guest);
    }
    const ws = await s.call("create", { image: BUSYBOX, vfs: { workspace: "/proc/ws" } }, id++);
    assert.equal(ws.error?.code, -32602);
    assert.match(ws.error.message, /workspace cannot be at or under \/proc/);
  });
});

/** Every entry under `dir` with its mode and content, to prove a host directory unchanged. */
async function treeOf(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const p = join(entry.parentPath, entry.name);
    const st = await stat(p);
    out[p] = `${st.mode.toString(8)} ${st.mtimeMs} ${entry.isFile() ? await readFile(p, "utf8") : ""}`;
  }
  return out;
}
