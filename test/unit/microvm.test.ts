// The micro-VM backend's pure parts: KVM detection, module load order, QEMU and kernel command lines.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, open, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConsoleCapture } from "../../src/engine/backends/microvm/console-capture.js";
import { cpuQuotaFor } from "../../src/engine/backends/microvm/cpu-quota.js";
import { chooseAccel, tscKhzFrom, type HostFacts } from "../../src/engine/backends/microvm/accel.js";
import { GUEST_9P_MODULES, GUEST_MODULES, GUEST_NET_MODULES, guestModuleSets, loadOrder, moduleName, parseModulesDep } from "../../src/engine/backends/microvm/module-order.js";
import { JAIL_PATHS, SHARE_CAPABILITIES, jailedCommand, qemuUser, type JailPlan } from "../../src/engine/backends/microvm/jail.js";
import { MAX_KERNEL_CMDLINE, guestMounts, kernelCmdline, qemuArgs, qemuOpt, type VmPlan } from "../../src/engine/backends/microvm/qemu-args.js";

const cpuinfo = (flags: string) => `processor\t: 0\ncpu MHz\t\t: 2445.410\nflags\t\t: fpu sse2 ${flags} avx\n`;
const facts = (over: Partial<HostFacts>): HostFacts => ({ cpuinfo: cpuinfo(""), devKvmUsable: true, kvmPvmLoaded: false, ...over });

test("KVM only with vmx/svm, a usable /dev/kvm and no PVM", () => {
  assert.equal(chooseAccel(facts({ cpuinfo: cpuinfo("vmx") }), undefined).accel, "kvm");
  assert.equal(chooseAccel(facts({ cpuinfo: cpuinfo("svm") }), undefined).accel, "kvm");
  // This kind of machine: /dev/kvm opens, but it is PVM and the CPU has no vmx/svm.
  const pvm = chooseAccel(facts({ kvmPvmLoaded: true }), undefined);
  assert.equal(pvm.accel, "tcg");
  assert.match(pvm.reason, /no vmx\/svm.*PVM/);
  const pvmWithFlag = chooseAccel(facts({ cpuinfo: cpuinfo("vmx"), kvmPvmLoaded: true }), undefined);
  assert.equal(pvmWithFlag.accel, "tcg");
  assert.match(pvmWithFlag.reason, /kvm_pvm/);
  const noDev = chooseAccel(facts({ cpuinfo: cpuinfo("svm"), devKvmUsable: false }), undefined);
  assert.equal(noDev.accel, "tcg");
  assert.match(noDev.reason, /\/dev\/kvm/);
  // "vmxnet"-like substrings are not the flag.
  assert.equal(chooseAccel(facts({ cpuinfo: cpuinfo("vmx_foo svmx") }), undefined).accel, "tcg");
});

test("MATCHLOCK_MICROVM_ACCEL forces an accelerator; junk is an error", () => {
  assert.equal(chooseAccel(facts({ cpuinfo: cpuinfo("vmx") }), "tcg").accel, "tcg");
  assert.equal(chooseAccel(facts({}), "kvm").accel, "kvm");
  assert.equal(chooseAccel(facts({}), "auto").accel, "tcg");
  assert.throws(() => chooseAccel(facts({}), "hvf"), /MATCHLOCK_MICROVM_ACCEL must be kvm, tcg or auto/);
});

test("the TSC frequency comes from cpuinfo's cpu MHz, in kHz", () => {
  assert.equal(tscKhzFrom(cpuinfo("")), 2445410);
  assert.equal(tscKhzFrom("processor : 0\n"), undefined);
  assert.equal(chooseAccel(facts({}), undefined).tscKhz, 2445410);
});

const DEP = `kernel/fs/netfs/netfs.ko:
kernel/fs/fuse/fuse.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/fs/overlayfs/overlay.ko:
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/crypto/crc32c_generic.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
`;

test("modules load after their dependencies, each once; the NIC's and the 9p stack are separate lists after the core", () => {
  const sets = guestModuleSets(parseModulesDep(DEP));
  const core = sets.core.map(moduleName);
  const net = sets.net.map(moduleName);
  const ninep = sets.ninep.map(moduleName);
  const order = [...core, ...net, ...ninep];
  assert.equal(new Set(order).size, order.length, "no module twice");
  for (const name of [...GUEST_MODULES, ...GUEST_NET_MODULES, ...GUEST_9P_MODULES]) assert.ok(order.includes(name), `${name} is loaded`);
  for (const name of ["9p", "9pnet", "9pnet_virtio", "netfs", "fscache"]) assert.ok(ninep.includes(name), `${name} only with 9p shares`);
  assert.deepEqual(net, ["failover", "net_failover", "virtio_net"], "the NIC's driver only with a network");
  const before = (a: string, b: string) => assert.ok(order.indexOf(a) < order.indexOf(b), `${a} before ${b}: ${order.join(" ")}`);
  before("virtio", "virtio_mmio");
  before("virtio_ring", "virtio_blk");
  before("9pnet", "9pnet_virtio");
  before("netfs", "fscache");
  before("fscache", "9p");
  before("net_failover", "virtio_net");
  assert.deepEqual(core, ["virtio", "virtio_ring", "virtio_mmio", "virtio_blk", "virtio_console", "crc32c_generic", "crc16", "mbcache", "jbd2", "ext4", "overlay"]);
  assert.equal(ninep.length, 5);
  assert.deepEqual(sets.fuse.map(moduleName), ["fuse"], "FUSE only for intercepted mounts");
  assert.deepEqual(loadOrder(parseModulesDep(DEP), ["ext4"]).map(moduleName), ["crc16", "mbcache", "jbd2", "ext4"]);
});

test("module names: - and _ are the same; unknown modules, broken lines and cycles are errors", () => {
  const deps = parseModulesDep("kernel/crypto/crc32c-intel.ko:\nkernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/a.ko\n");
  assert.deepEqual(loadOrder(deps, ["crc32c_intel"]), ["kernel/crypto/crc32c-intel.ko"]);
  assert.throws(() => loadOrder(deps, ["nope"]), /has no module "nope"/);
  assert.throws(() => loadOrder(deps, ["a"]), /cycle/);
  assert.throws(() => parseModulesDep("no colon here\n"), /line 1 is malformed/);
  assert.throws(() => loadOrder(parseModulesDep("kernel/a.ko: kernel/missing.ko\n"), ["a"]), /missing\.ko, which modules\.dep does not list/);
});

const plan = (over: Partial<VmPlan> = {}): VmPlan => ({
  id: "vm-0123abcd", cpus: 1.5, memoryMb: 512, diskSizeMb: 2048, hostname: "vm-0123abcd", privileged: false,
  accel: { accel: "tcg", reason: "test", tscKhz: 2445410 },
  vmlinux: "/k/vmlinux", initramfs: "/k/initramfs.cpio", rootImage: "/img/rootfs.ext4", agentFd: 3,
  mounts: [
    { kind: "bind", guestPath: "/workspace/src", hostPath: "/host/src,x", readonly: true },
    { kind: "tmpfs", guestPath: "/workspace" },
    { kind: "bind", guestPath: "/data", hostPath: "/host/data", readonly: false },
  ],
  ...over,
});

/** The value following `flag`, for every occurrence. */
const values = (args: string[], flag: string) => args.flatMap((a, i) => (args[i - 1] === flag ? [a] : []));

test("QEMU command line: microvm, TCG, whole vCPUs, memory, read-only root, socketpair channel, 9p, no network", () => {
  const args = qemuArgs(plan());
  assert.deepEqual(values(args, "-M"), ["microvm"]);
  assert.deepEqual(values(args, "-accel"), ["tcg"]);
  assert.deepEqual(values(args, "-cpu"), ["max"]);
  assert.deepEqual(values(args, "-smp"), ["2"], "1.5 cpus round up to 2 vCPUs");
  assert.deepEqual(values(args, "-m"), ["512"]);
  assert.deepEqual(values(args, "-nic"), ["none"]);
  assert.ok(args.includes("-no-reboot") && args.includes("-nodefaults"));
  assert.ok(!args.includes("-enable-kvm"));
  assert.deepEqual(values(args, "-drive"), ["file=/img/rootfs.ext4,format=raw,if=none,id=root,readonly=on"]);
  assert.deepEqual(values(args, "-chardev"), ["socket,id=agent,fd=3"]);
  assert.ok(values(args, "-device").includes("virtserialport,chardev=agent,name=matchlock.agent"));
  // Parents first: /workspace (tmpfs) is not a share; shares are numbered in order.
  assert.deepEqual(values(args, "-fsdev"), [
    "local,id=fs1,path=/host/data,security_model=mapped-xattr",
    "local,id=fs2,path=/host/src,,x,security_model=none,readonly=on",
  ]);
  assert.deepEqual(values(args, "-device").filter((d) => d.startsWith("virtio-9p")), [
    "virtio-9p-device,fsdev=fs1,mount_tag=ml0",
    "virtio-9p-device,fsdev=fs2,mount_tag=ml1",
  ]);
  assert.deepEqual(values(args, "-netdev"), []);
  const kvm = qemuArgs(plan({ accel: { accel: "kvm", reason: "test", tscKhz: undefined } }));
  assert.deepEqual(values(kvm, "-accel"), ["kvm"]);
  assert.deepEqual(values(kvm, "-cpu"), ["host"]);
});

test("extra disks: fd sets of the engine's descriptors (read-only, and read-write for a writable disk), virtio-blk by serial, d: specs after the mounts", () => {
  const p = plan({ disks: [{ fds: [4], readonly: true, guestPath: "/ro" }, { fds: [5, 6], readonly: false, guestPath: "/data" }] });
  const args = qemuArgs(p);
  assert.deepEqual(values(args, "-add-fd"), ["fd=4,set=1", "fd=5,set=2", "fd=6,set=2"]);
  assert.ok(values(args, "-drive").includes("file=/dev/fdset/1,format=raw,if=none,id=disk0,readonly=on"));
  assert.ok(values(args, "-drive").includes("file=/dev/fdset/2,format=raw,if=none,id=disk1,readonly=off"));
  assert.ok(values(args, "-device").includes("virtio-blk-device,drive=disk1,serial=mldisk1"));
  const mounts = /matchlock\.mounts=(\S+)/.exec(kernelCmdline(p))![1]!.split(",");
  assert.deepEqual(mounts.slice(-2), [`d:mldisk0:ro:${Buffer.from("/ro").toString("hex")}`, `d:mldisk1:rw:${Buffer.from("/data").toString("hex")}`]);
});

test("kernel command line: TCG fixes, panic reboots, hex-encoded hostname and mounts in parent-first order", () => {
  const line = kernelCmdline(plan());
  for (const word of ["console=ttyS0", "quiet", "panic=-1", "cryptomgr.notests", "tsc_early_khz=2445410", "matchlock.disk_mb=2048", "matchlock.port=matchlock.agent"]) {
    assert.ok(line.split(" ").includes(word), `${word} in ${line}`);
  }
  // With KVM the TSC rate comes from kvmclock; cpuinfo's "cpu MHz" may be a scaled clock.
  const kvm = kernelCmdline(plan({ accel: { accel: "kvm", reason: "test", tscKhz: 2445410 } }));
  assert.ok(!kvm.includes("tsc_early_khz"), kvm);
  const hex = (s: string) => Buffer.from(s).toString("hex");
  assert.ok(line.includes(`matchlock.hostname=${hex("vm-0123abcd")}`));
  assert.ok(line.includes(`matchlock.mounts=t:${hex("/workspace")},9:ml0:rw:${hex("/data")},9:ml1:ro:${hex("/workspace/src")}`));
  assert.deepEqual(guestMounts(plan().mounts).map((m) => m.guestPath), ["/workspace", "/data", "/workspace/src"]);
  // A host file is an f: share: the init binds the share's one file into place.
  const fileShare = kernelCmdline(plan({ mounts: [{ kind: "bind", guestPath: "/etc/app.conf", hostPath: "/shares/0", readonly: true, file: true }] }));
  assert.ok(fileShare.includes(`matchlock.mounts=f:ml0:ro:${hex("/etc/app.conf")}`), fileShare);
  assert.ok(qemuArgs(plan({ mounts: [{ kind: "bind", guestPath: "/etc/app.conf", hostPath: "/shares/0", readonly: true, file: true }] })).includes("local,id=fs0,path=/shares/0,security_model=none,readonly=on,multidevs=remap"));
  // A path with spaces cannot break the init's word splitting.
  const spaced = kernelCmdline(plan({ mounts: [{ kind: "tmpfs", guestPath: "/my dir" }] }));
  assert.ok(!spaced.includes("my dir"));
  // The guest init's step timestamps only on request.
  assert.ok(!line.includes("matchlock.trace"));
  assert.ok(kernelCmdline(plan({ trace: true })).split(" ").includes("matchlock.trace=1"));
  // A privileged sandbox's agent leaves its commands unconfined.
  assert.ok(!line.includes("matchlock.privileged"));
  assert.ok(kernelCmdline(plan({ privileged: true })).split(" ").includes("matchlock.privileged=1"));
});

test("the jail: namespaces, read-only view, the user and capabilities dropped last, then QEMU", () => {
  const base: JailPlan = {
    dir: "/state/vm-1/jail", qemu: "/usr/bin/qemu-system-x86_64", uid: 65534, gid: 65534, groups: [],
    files: [{ host: "/cache/vmlinux", jail: JAIL_PATHS.vmlinux }],
    shares: [], devices: ["/dev/null"], ownDevices: [{ path: "/dev/net/tun", major: 10, minor: 200 }], rootLinks: [{ name: "bin", target: "usr/bin" }], capabilities: [], netns: undefined,
  };
  const [cmd, args] = jailedCommand(base, ["-M", "microvm"]);
  assert.equal(cmd, "setpriv");
  assert.deepEqual(args.slice(0, 4), ["--pdeathsig", "KILL", "--", "unshare"]);
  const unshare = args.slice(4, args.indexOf("sh"));
  for (const flag of ["--mount", "--pid", "--fork", "--kill-child", "--ipc", "--uts", "--net"]) assert.ok(unshare.includes(flag), flag);
  const script = args.slice(args.indexOf("matchlock-jail") + 1);
  const sections = (from: number): string[][] => {
    const out: string[][] = [];
    let rest = script.slice(from);
    for (let i = 0; i < 3; i++) {
      out.push(rest.slice(0, rest.indexOf("--")));
      rest = rest.slice(rest.indexOf("--") + 1);
    }
    return [...out, rest];
  };
  const [dirs, links, entries, drop] = sections(1);
  assert.equal(script[0], "/state/vm-1/jail");
  assert.deepEqual(dirs, ["usr", "etc", "dev", "dev/net", "vm"]);
  assert.deepEqual(links, ["usr/bin"]);
  assert.deepEqual(entries, [
    "dir", "/usr", "/usr", "-", "file", "/etc/ld.so.cache", "/etc/ld.so.cache", "-",
    "dev", "/dev/null", "/dev/null", "-", "chardev", "10:200:65534:65534", "/dev/net/tun", "-", "file", "/cache/vmlinux", "/vm/vmlinux", "-",
  ]);
  assert.deepEqual(drop, [
    "setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps", "-all", "--bounding-set", "-all",
    "--no-new-privs", "--pdeathsig", "KILL", "--", "/usr/bin/qemu-system-x86_64", "-M", "microvm",
  ]);
  // With shares (and a NIC): the shares, a /proc for 9p, two ambient capabilities, the VM's own network namespace.
  const [, shared] = jailedCommand({ ...base, shares: [{ host: "/h/a", jail: "/shares/0", readonly: false, file: false, identity: "5:7" }], capabilities: SHARE_CAPABILITIES, netns: "/var/run/netns/matchlock-1" }, []);
  assert.ok(!shared.includes("--net"));
  assert.deepEqual(shared.slice(0, 7), ["--pdeathsig", "KILL", "--", "nsenter", "--net=/var/run/netns/matchlock-1", "--", "unshare"]);
  const tail = shared.join(" ");
  assert.ok(tail.includes("rw /h/a /shares/0 5:7 proc proc /proc - --"), tail);
  // A host file: bound as the one file of its share directory (made in the jail's read-only tmpfs), read-write or read-only.
  const [, files] = jailedCommand({ ...base, shares: [{ host: "/h/f.txt", jail: "/shares/0", readonly: false, file: true }, { host: "/h/g.txt", jail: "/shares/1", readonly: true, file: true }], capabilities: SHARE_CAPABILITIES }, []);
  const fileScript = files.slice(files.indexOf("matchlock-jail") + 1);
  assert.ok(fileScript.slice(0, fileScript.indexOf("--")).includes("shares/0") && fileScript.includes("shares/1"), fileScript.join(" "));
  assert.ok(files.join(" ").includes("rwfile /h/f.txt /shares/0/file - file /h/g.txt /shares/1/file - proc proc /proc - --"), files.join(" "));
  assert.ok(tail.includes("--inh-caps -all,+dac_override,+fowner --ambient-caps +dac_override,+fowner --bounding-set -all,+dac_override,+fowner"), tail);
  // A QEMU outside /usr is bound at a fixed place and run from there.
  const [, custom] = jailedCommand({ ...base, qemu: "/opt/my qemu/bin/qemu" }, []);
  assert.ok(custom.join(" ").includes("file /opt/my qemu/bin/qemu /qemu -"));
  assert.equal(custom[custom.length - 1], "/qemu");
});

test("MATCHLOCK_QEMU_USER: uid:gid, never root", () => {
  assert.deepEqual(qemuUser(undefined), { uid: 65534, gid: 65534 });
  assert.deepEqual(qemuUser("1234:99"), { uid: 1234, gid: 99 });
  for (const bad of ["0:0", "nobody", "1:", "-1:2", "1:2:3"]) assert.throws(() => qemuUser(bad), /MATCHLOCK_QEMU_USER must be "uid:gid"/, bad);
});

test("a sealed network: the engine's tap as a virtio-net device, the guest's address and route on the kernel command line", () => {
  const network = { tap: "mlh0123abcd", guestIp: "10.200.4.6", prefixLength: 30, gateway: "10.200.4.5" };
  const args = qemuArgs(plan({ network }));
  assert.deepEqual(values(args, "-nic"), []);
  assert.deepEqual(values(args, "-netdev"), ["tap,id=net0,ifname=mlh0123abcd,script=no,downscript=no"]);
  assert.ok(values(args, "-device").includes("virtio-net-device,netdev=net0"));
  assert.ok(kernelCmdline(plan({ network })).split(" ").includes("matchlock.net=10.200.4.6/30,10.200.4.5"));
  assert.ok(!kernelCmdline(plan()).includes("matchlock.net="));
  // Another MTU is offered to the guest's driver, which takes it; 1500 leaves the device as it was.
  assert.ok(values(qemuArgs(plan({ network: { ...network, mtu: 1400 } })), "-device").includes("virtio-net-device,netdev=net0,host_mtu=1400"));
  assert.ok(values(qemuArgs(plan({ network: { ...network, mtu: 1500 } })), "-device").includes("virtio-net-device,netdev=net0"));
});

test("bad plans are clear errors: too little memory, a kernel command line too long", () => {
  assert.throws(() => qemuArgs(plan({ memoryMb: 64 })), /at least 128 MB/);
  const long = Array.from({ length: 20 }, (_, i) => ({ kind: "tmpfs" as const, guestPath: `/${"x".repeat(60)}${i}` }));
  assert.throws(() => kernelCmdline(plan({ mounts: long })), new RegExp(`of ${MAX_KERNEL_CMDLINE - 1} bytes`));
  assert.equal(qemuOpt("a,b,,c"), "a,,b,,,,c");
});

test("the guest console reaches the log only up to 1 MiB; the tail for errors is cleaned of control bytes", async () => {
  const dir = await mkdtemp(join(tmpdir(), "matchlock-console-"));
  try {
    const file = join(dir, "vm.log");
    const capture = new ConsoleCapture(await open(file, "a"));
    const line = Buffer.from("x".repeat(1023) + "\n");
    for (let i = 0; i < 3 * 1024; i++) capture.write(line); // 3 MiB from a chatty (or hostile) guest
    capture.write(Buffer.from("boot \x1b[31mfailed\x07 here\n"));
    await capture.close();
    const size = (await stat(file)).size;
    assert.ok(size <= 1024 * 1024 + 64, `log grew to ${size} bytes`);
    assert.match(await readFile(file, "utf8"), /\[console output truncated\]\n$/);
    assert.equal(capture.tail(1), "boot [31mfailed here");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("the micro-VM needs a quota cgroup for fractional cpus only (whole vCPUs are their own limit)", async () => {
  assert.equal(await cpuQuotaFor("vm-00000000", 1), undefined);
  assert.equal(await cpuQuotaFor("vm-00000000", 4), undefined);
});
