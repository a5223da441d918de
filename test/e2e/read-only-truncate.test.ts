// End to end: a read-only host mount never changes the host, whichever way the guest asks for a
// truncation or a write: the shell's redirections, coreutils, every open(2) flag combination
// with O_TRUNC (O_RDONLY|O_TRUNC too), truncate/ftruncate, a symlink or /proc/self/fd into the
// mount, a shared writable mapping, and the agent's own file-writing RPC. Current runsc with
// directfs once emptied the host file on an O_TRUNC open although the guest got EROFS.
// Targets: a file at the mount's top, one in a subdirectory, one in a file system mounted
// inside the host directory (a submount; gVisor shows it, the micro-VM's jail shares the
// directory without what is mounted inside), and a single read-only file mount.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { RPCError, Sandbox, type Client } from "../../src/sdk/index.js";
import { BACKEND, PYTHON, newClient, setUpE2E } from "../helpers/e2e.js";

const execFileP = promisify(execFile);
const ORIGINAL = "original content, never to change\n";

/** Shell cases: `$F` is the target; each runs in its own subshell and prints its status. */
const SHELL_CASES: Record<string, string> = {
  "sh : >": ': > "$F"',
  "sh echo >": 'echo x > "$F"',
  "sh >>": 'echo x >> "$F"',
  "truncate -s 0": 'truncate -s 0 "$F"',
  "truncate -s 1": 'truncate -s 1 "$F"',
  "dd of= (truncates)": 'dd if=/dev/null of="$F" status=none',
  "dd of= seek=1 (truncates at 1)": 'dd if=/dev/null of="$F" bs=1 seek=1 status=none',
  "dd of= conv=notrunc (writes)": 'dd if=/dev/zero of="$F" bs=1 count=1 conv=notrunc status=none',
  "cp /dev/null": 'cp /dev/null "$F"',
  "symlink in /tmp, then : >": 'ln -sf "$F" /tmp/ro-link && : > /tmp/ro-link',
};

/** Each case tries one way and exits 0 only if the call succeeded. */
const PYTHON_SCRIPT = String.raw`
import mmap, os, sys
f = sys.argv[1]
def rdonly_trunc(): os.close(os.open(f, os.O_RDONLY | os.O_TRUNC))
def wronly_trunc(): os.close(os.open(f, os.O_WRONLY | os.O_TRUNC))
def rdwr_trunc(): os.close(os.open(f, os.O_RDWR | os.O_TRUNC))
def creat_trunc(): os.close(os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
def append_trunc(): os.close(os.open(f, os.O_WRONLY | os.O_APPEND | os.O_TRUNC))
def open_w(): open(f, "w").close()
def open_rplus_truncate():
    with open(f, "r+") as h: h.truncate(0)
def path_truncate(): os.truncate(f, 0)
def ftruncate_rdonly():
    fd = os.open(f, os.O_RDONLY)
    try: os.ftruncate(fd, 0)
    finally: os.close(fd)
def proc_fd_reopen():
    fd = os.open(f, os.O_RDONLY)
    try: os.close(os.open("/proc/self/fd/%d" % fd, os.O_WRONLY | os.O_TRUNC))
    finally: os.close(fd)
def pwrite_rdonly():
    fd = os.open(f, os.O_RDONLY)
    try: os.pwrite(fd, b"x", 0)
    finally: os.close(fd)
def mmap_shared_write():
    fd = os.open(f, os.O_RDONLY)
    try:
        m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        m[0:1] = b"x"; m.flush(); m.close()
    finally: os.close(fd)
for name, fn in list(globals().items()):
    if callable(fn) and fn.__module__ == "__main__" and name != "fn":
        try:
            fn(); print(name, "SUCCEEDED")
        except OSError as e:
            print(name, "refused", e.strerror)
        except Exception as e:  # e.g. mmap of a file some earlier case emptied
            print(name, "failed otherwise:", type(e).__name__, e)
`;

describe(`a read-only host mount never changes the host, however the guest truncates or writes, on ${BACKEND}`, () => {
  let client: Client;
  let base: string;
  let submount: string;
  const hostFiles = () => [join(base, "ro", "top.txt"), join(base, "ro", "sub", "deep.txt"), join(base, "ro", "inner", "mounted.txt"), join(base, "single.txt")];
  const targets = () => [
    "/workspace/ro/top.txt", "/workspace/ro/sub/deep.txt", "/workspace/single.txt",
    ...(BACKEND === "gvisor" ? ["/workspace/ro/inner/mounted.txt"] : []),
  ];

  before(async () => {
    await setUpE2E();
    base = await mkdtemp(join(tmpdir(), "matchlock-ro-truncate-"));
    await mkdir(join(base, "ro", "sub"), { recursive: true });
    submount = join(base, "ro", "inner");
    await mkdir(submount);
    // A file system of its own inside the shared directory: read-only must reach it too.
    await execFileP("mount", ["-t", "tmpfs", "-o", "size=1m", "matchlock-test", submount]);
    for (const f of hostFiles()) await writeFile(f, ORIGINAL);
    const sandbox = new Sandbox(PYTHON).withMemory(256)
      .mount("/workspace/ro", { type: "host_fs", hostPath: join(base, "ro"), readonly: true })
      .mount("/workspace/single.txt", { type: "host_fs", hostPath: join(base, "single.txt"), readonly: true });
    client = newClient();
    await client.launch(sandbox);
    await client.writeFile("/tmp/cases.py", PYTHON_SCRIPT);
    await client.writeFile("/tmp/cases.sh", Object.entries(SHELL_CASES).map(([name, cmd]) => `(${cmd}) 2>/dev/null; echo "${name}: $?"`).join("\n"));
  });
  after(async () => {
    await client?.close();
    await client?.remove();
    if (submount) await execFileP("umount", [submount]).catch(() => {});
    if (base) await rm(base, { recursive: true, force: true });
  });

  async function assertHostIntact(after_: string): Promise<void> {
    for (const f of hostFiles()) assert.equal(await readFile(f, "utf8"), ORIGINAL, `${f} changed on the host after ${after_}`);
  }

  test("every target is visible to the guest with the host's content", async () => {
    for (const t of targets()) assert.equal((await client.exec(`cat ${t}`)).stdout, ORIGINAL, t);
    if (BACKEND !== "gvisor") {
      const inner = await client.exec("ls -A /workspace/ro/inner");
      assert.deepEqual([inner.exitCode, inner.stdout], [0, ""], "the micro-VM shows the submount's directory empty");
    }
  });

  test("shell redirections and coreutils: each fails, the host files stay whole", async () => {
    for (const t of targets()) {
      const r = await client.exec(`F=${t} sh /tmp/cases.sh`);
      const lines = r.stdout.trim().split("\n");
      assert.equal(lines.length, Object.keys(SHELL_CASES).length, r.stdout + r.stderr);
      assert.deepEqual(lines.filter((l) => l.endsWith(": 0")), [], `cases that succeeded on ${t}`);
      await assertHostIntact(`the shell cases on ${t}:\n${r.stdout}`);
    }
  });

  test("open(2) with O_TRUNC in every access mode, truncate, ftruncate, /proc/self/fd, pwrite, a shared mapping: each refused, the host files stay whole", async () => {
    for (const t of targets()) {
      const r = await client.exec(`python3 /tmp/cases.py ${t}`);
      assert.equal(r.exitCode, 0, r.stderr);
      const lines = r.stdout.trim().split("\n");
      assert.equal(lines.length, 12, r.stdout);
      assert.deepEqual(lines.filter((l) => !/ refused /.test(l)), [], `cases that succeeded on ${t}`);
      await assertHostIntact(`the system-call cases on ${t}:\n${r.stdout}`);
    }
  });

  test("the agent's file writes (writeFile, writeFileMode) are file errors, the host files stay whole", async () => {
    for (const t of targets()) {
      const isRefused = (err: unknown) => err instanceof RPCError && err.isFileError() && /read-only/i.test(err.message);
      await assert.rejects(client.writeFile(t, "x"), isRefused, t);
      await assert.rejects(client.writeFile(t, ""), isRefused, t);
      await assert.rejects(client.writeFileMode(t, "x", 0o600), isRefused, t);
      await assertHostIntact(`writeFile on ${t}`);
    }
  });

  test("after all of it the guest still reads the host's content", async () => {
    for (const t of targets()) assert.equal((await client.readFile(t)).toString(), ORIGINAL, t);
    await assertHostIntact("everything");
  });
});
