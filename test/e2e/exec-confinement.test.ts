// End to end: commands in a default sandbox run as a container would, the same on both engines:
// Docker's default capability set (without CAP_NET_RAW), no_new_privs, a seccomp filter and
// Yama's ptrace_scope 1, so loading a kernel module, mounting, changing the hostname or making a
// user namespace fails. A privileged sandbox (`withPrivileged()`) keeps what the engine allows.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Sandbox } from "../../src/sdk/index.js";
import { BACKEND, PYTHON, newClient, setUpE2E } from "../helpers/e2e.js";
import { RawSession } from "../helpers/raw-rpc.js";

const EPERM = 1;
const ENOEXEC = 8;
const ENOSYS = 38;

/** Asks the kernel (or gVisor's) directly, so no tool's own checks are measured. */
const PROBE = String.raw`
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
def errno_of(result):
    return 0 if result == 0 else ctypes.get_errno()
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
os.makedirs("/tmp/probe-mnt", exist_ok=True)
out = {
    "caps": {k: status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd")},
    "no_new_privs": libc.prctl(39, 0, 0, 0, 0),
    "seccomp": libc.prctl(21, 0, 0, 0, 0),
    "ptrace_scope": open("/proc/sys/kernel/yama/ptrace_scope").read().strip(),
    "sethostname": errno_of(libc.sethostname(b"probe", 5)),
    "mount": errno_of(libc.mount(b"none", b"/tmp/probe-mnt", b"tmpfs", 0, None)),
    "init_module": errno_of(libc.syscall(175, ctypes.c_char_p(b"junk"), 4, ctypes.c_char_p(b""))),
    "unshare_user": errno_of(libc.unshare(0x10000000)),
}
print(json.dumps(out))
`;

interface Probe {
  caps: Record<string, string>;
  no_new_privs: number;
  seccomp: number;
  ptrace_scope: string;
  sethostname: number;
  mount: number;
  init_module: number;
  unshare_user: number;
}

async function probe(sandbox: Sandbox): Promise<Probe> {
  await using client = newClient();
  await client.launch(sandbox);
  await client.writeFile("/tmp/probe.py", PROBE);
  const r = await client.exec("python3 /tmp/probe.py");
  assert.equal(r.exitCode, 0, r.stderr);
  return JSON.parse(r.stdout) as Probe;
}

/** Docker's default set without CAP_NET_RAW: 0xa80405fb. */
const DEFAULT_CAPS = "00000000a80405fb";

describe(`commands are confined unless the sandbox is privileged, on ${BACKEND}`, () => {
  test("default: the container capability set, no_new_privs, seccomp; module, mount, hostname and user namespace refused", async () => {
    await setUpE2E();
    const p = await probe(new Sandbox(PYTHON));
    assert.deepEqual(p.caps, { CapInh: "0000000000000000", CapPrm: DEFAULT_CAPS, CapEff: DEFAULT_CAPS, CapBnd: DEFAULT_CAPS });
    assert.equal(p.no_new_privs, 1);
    assert.equal(p.seccomp, 2, "a seccomp filter is installed");
    assert.equal(p.ptrace_scope, "1");
    assert.equal(p.sethostname, EPERM);
    assert.equal(p.mount, EPERM);
    assert.equal(p.init_module, EPERM);
    assert.equal(p.unshare_user, EPERM);
  });

  test("privileged: every capability the engine has, no filter; hostname and mount work", async () => {
    await setUpE2E();
    const p = await probe(new Sandbox(PYTHON).withPrivileged());
    // gVisor knows capabilities up to CAP_AUDIT_READ and withholds CAP_NET_RAW (raw sockets need runsc --net-raw).
    const all = BACKEND === "microvm" ? "000001ffffffffff" : "0000003fffffdfff";
    assert.deepEqual(p.caps, { CapInh: "0000000000000000", CapPrm: all, CapEff: all, CapBnd: all });
    // gVisor sets no_new_privs on every process whatever the spec says (it has no setuid executables to guard).
    assert.equal(p.no_new_privs, BACKEND === "microvm" ? 0 : 1);
    assert.equal(p.seccomp, 0);
    assert.equal(p.sethostname, 0);
    assert.equal(p.mount, 0);
    // Past the capability check: the micro-VM's kernel parses (and rejects) the junk module;
    // gVisor has no kernel modules at all.
    assert.equal(p.init_module, BACKEND === "microvm" ? ENOEXEC : ENOSYS);
  });

  test("`privileged` on the wire must be a boolean", async () => {
    await setUpE2E();
    const s = new RawSession();
    try {
      const r = await s.call("create", { image: PYTHON, privileged: "yes" }, 1);
      assert.equal(r.error?.code, -32602, JSON.stringify(r));
      assert.match(r.error.message, /privileged must be true or false/);
    } finally {
      s.proc.stdin.end();
      await s.exited;
    }
  });
});
