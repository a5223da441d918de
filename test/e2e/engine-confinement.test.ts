// End to end: the host process that runs a sandbox's code is itself confined. On the micro-VM
// that is QEMU (jail.ts): not root, no capabilities at all (only the two that serve 9p shares
// when it has some), no_new_privs, QEMU's seccomp filter, chrooted into its jail, in its own pid
// and mount namespaces, and in a network namespace of its own: empty when the VM has no NIC, else
// holding only the VM's tap bridged to the veth whose host end the seal filters. On gVisor it is
// runsc's sandbox process, which runsc confines itself (nobody, seccomp, no_new_privs).
import assert from "node:assert/strict";
import { mkdtemp, readFile, readlink, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { Sandbox } from "../../src/sdk/index.js";
import { BACKEND, BUSYBOX, newClient, processesOf, setUpE2E } from "../helpers/e2e.js";

const CAP_DAC_OVERRIDE = 1n;
const CAP_FOWNER = 3n;
const CAP_SYS_CHROOT = 18n;
const CAP_SYS_PTRACE = 21n;
const bit = (n: bigint) => 1n << n;

/** The pid of the process that runs the guest: QEMU, or runsc's sandbox (runsc-sandbox). */
async function guestRunner(vmId: string): Promise<number> {
  const name = BACKEND === "microvm" ? /^\S*qemu-system-\S+$/ : /^runsc-sandbox$/;
  const found = (await processesOf(vmId)).map((l) => l.trim().split(/\s+/)).filter((f) => name.test(f[1] ?? ""));
  assert.equal(found.length, 1, `one guest process for ${vmId}: ${JSON.stringify(found)}`);
  return Number(found[0]![0]);
}

async function statusOf(pid: number): Promise<Record<string, string>> {
  const text = await readFile(`/proc/${pid}/status`, "utf8");
  return Object.fromEntries(text.split("\n").filter((l) => l.includes(":")).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()]));
}

const caps = (hex: string | undefined) => BigInt(`0x${hex ?? "x"}`);

/** The checks both kinds of sandbox share: not root, no_new_privs, a seccomp filter. */
function assertUnprivileged(s: Record<string, string>): void {
  for (const id of s.Uid!.split(/\s+/)) assert.notEqual(id, "0", `uid ${s.Uid}`);
  for (const id of s.Gid!.split(/\s+/)) assert.notEqual(id, "0", `gid ${s.Gid}`);
  assert.equal(s.NoNewPrivs, "1");
  assert.equal(s.Seccomp, "2", "a seccomp filter is installed");
}

describe(`the process running a sandbox is confined on ${BACKEND}`, () => {
  before(async () => {
    await setUpE2E();
  });

  test("no network, no shares: not root, no capabilities, no_new_privs, seccomp, own namespaces", async () => {
    await using client = newClient();
    const vmId = await client.launch(new Sandbox(BUSYBOX));
    const pid = await guestRunner(vmId);
    const s = await statusOf(pid);
    assertUnprivileged(s);
    if (BACKEND === "microvm") {
      for (const set of ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]) assert.equal(caps(s[set]), 0n, `${set} ${s[set]}`);
      assert.match(await readlink(`/proc/${pid}/root`), new RegExp(`/vms/${vmId}/jail$`), "chrooted into its jail");
      for (const ns of ["pid", "mnt", "net", "ipc"]) {
        assert.notEqual(await readlink(`/proc/${pid}/ns/${ns}`), await readlink(`/proc/self/ns/${ns}`), `its own ${ns} namespace`);
      }
    } else {
      // runsc's ptrace platform keeps SYS_PTRACE (to run the guest) and SYS_CHROOT.
      assert.equal(caps(s.CapEff) & ~(bit(CAP_SYS_CHROOT) | bit(CAP_SYS_PTRACE)), 0n, `CapEff ${s.CapEff}`);
    }
    assert.equal((await client.exec("echo alive")).stdout, "alive\n");
  });

  test("with a read-write share and a sealed network: only what serving the share needs", async () => {
    const dir = await mkdtemp(join(tmpdir(), "matchlock-confined-share-"));
    await using client = newClient();
    const vmId = await client.launch(new Sandbox(BUSYBOX).mountHostDir("/workspace/share", dir).allowHost("example.test"));
    const pid = await guestRunner(vmId);
    const s = await statusOf(pid);
    assertUnprivileged(s);
    assert.notEqual(await readlink(`/proc/${pid}/ns/net`), await readlink("/proc/self/ns/net"), "not in the host's network namespace");
    if (BACKEND === "microvm") {
      const share = bit(CAP_DAC_OVERRIDE) | bit(CAP_FOWNER);
      for (const set of ["CapPrm", "CapEff", "CapBnd", "CapAmb"]) assert.equal(caps(s[set]), share, `${set} ${s[set]}`);
      assert.notEqual(await readlink(`/proc/${pid}/ns/pid`), await readlink("/proc/self/ns/pid"));
      // A QEMU taken over could open sockets only where its netns reaches: the VM's own wire.
      const devices = (await readFile(`/proc/${pid}/net/dev`, "utf8")).split("\n").slice(2)
        .map((l) => l.split(":")[0]!.trim().replace(/^mlg[0-9a-f]+$/, "veth")).filter(Boolean).sort();
      assert.deepEqual(devices, ["br0", "lo", "tap0", "veth"]);
      const routes = (await readFile(`/proc/${pid}/net/route`, "utf8")).trim().split("\n").slice(1);
      assert.deepEqual(routes, [], "no IPv4 route: QEMU's netns has no address");
    } else {
      assert.equal(caps(s.CapEff) & ~(bit(CAP_SYS_CHROOT) | bit(CAP_SYS_PTRACE)), 0n, `CapEff ${s.CapEff}`);
    }
    const r = await client.exec("echo from-guest > /workspace/share/f && mkdir /workspace/share/d && echo ok");
    assert.equal(r.stdout, "ok\n", r.stderr);
    assert.equal(await readFile(join(dir, "f"), "utf8"), "from-guest\n");
    assert.ok((await stat(join(dir, "d"))).isDirectory());
  });
});
