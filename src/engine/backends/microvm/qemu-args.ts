// The QEMU command line and guest kernel command line for one micro-VM. Pure functions, so
// the exact shape is unit-tested; microvm.ts only supplies the paths.
import type { BackendMount } from "../backend.js";
import type { AccelChoice } from "./accel.js";
import { GUEST_TASK_LIMIT } from "../task-limit.js";

/** Name of the virtio-serial port the guest's init hands to the agent. */
export const AGENT_PORT_NAME = "matchlock.agent";
/** x86's COMMAND_LINE_SIZE: longer kernel command lines are cut off silently. */
export const MAX_KERNEL_CMDLINE = 2048;
/** Below this the 6.1 kernel plus our initramfs does not boot reliably. */
export const MIN_MEMORY_MB = 128;
/** Ethernet's MTU: the NIC's unless the create asks for another. */
const DEFAULT_MTU = 1500;

export interface VmPlan {
  id: string;
  cpus: number;
  memoryMb: number;
  diskSizeMb: number;
  hostname: string;
  /** Commands keep every capability (the guest init starts the agent with --privileged). */
  privileged: boolean;
  /** The guest init loads FUSE, for intercepted mounts. */
  fuse?: boolean;
  accel: AccelChoice;
  vmlinux: string;
  initramfs: string;
  /** The image's read-only ext4, shared by every VM of that image. */
  rootImage: string;
  /** QEMU's descriptor number of its end of the agent channel (a connected unix socket). */
  agentFd: number;
  /** `file`: a bind mount whose host path is a file, shared as the one file of its share directory (jail.ts). */
  mounts: Array<BackendMount & { file?: boolean }>;
  /**
   * Extra disks (ext4 images), parents before children, passed to QEMU as open file descriptors
   * (opened by the engine: QEMU's unprivileged user could not open them): `fds` holds one
   * read-only descriptor, and for a writable disk a read-write one too (QEMU picks from the set
   * by access mode, and opens a writable image read-only first).
   */
  disks?: Array<{ fds: number[]; readonly: boolean; guestPath: string }>;
  /** Guest init prints its uptime at each step on the console (MATCHLOCK_TRACE_STARTUP). */
  trace?: boolean;
  /** The sealed network's link: the host's tap and the guest's address; absent: no NIC at all. */
  network?: GuestNetwork | undefined;
}

export interface GuestNetwork {
  tap: string;
  guestIp: string;
  prefixLength: number;
  /** The host end's address: the guest's only route, its resolver, the proxy. */
  gateway: string;
  /** The NIC's MTU; other than 1500 it is offered to the guest's driver (virtio's host_mtu), which takes it. */
  mtu?: number | undefined;
}

/** A mount as the guest's init realises it; 9p shares are numbered in QEMU's order. */
export type GuestMount =
  | { kind: "tmpfs"; guestPath: string }
  | { kind: "9p"; tag: string; hostPath: string; readonly: boolean; guestPath: string; file: boolean };

/** Parents before children, so /workspace/src lands inside the /workspace mount. */
export function guestMounts(mounts: VmPlan["mounts"]): GuestMount[] {
  const sorted = [...mounts].sort((a, b) => a.guestPath.split("/").length - b.guestPath.split("/").length);
  let shares = 0;
  return sorted.map((m) =>
    m.kind === "tmpfs"
      ? { kind: "tmpfs", guestPath: m.guestPath }
      : { kind: "9p", tag: `ml${shares++}`, hostPath: m.hostPath, readonly: m.readonly, guestPath: m.guestPath, file: m.file === true },
  );
}

/**
 * The guest init reads its instructions from /proc/cmdline. Paths are hex-encoded so that any
 * byte (spaces, commas, quotes) survives word splitting in the init's shell unchanged.
 */
export function kernelCmdline(plan: VmPlan): string {
  const mounts = guestMounts(plan.mounts).map((m) =>
    m.kind === "tmpfs" ? `t:${hex(m.guestPath)}` : `${m.file ? "f" : "9"}:${m.tag}:${m.readonly ? "ro" : "rw"}:${hex(m.guestPath)}`,
  );
  // Disks after the mounts: a disk is never a parent of a mount (create refuses that).
  const disks = (plan.disks ?? []).map((d, i) => `d:${diskSerial(i)}:${d.readonly ? "ro" : "rw"}:${hex(d.guestPath)}`);
  mounts.push(...disks);
  const parts = [
    "console=ttyS0", "quiet", "loglevel=1",
    // Reboot at once on a panic (e.g. the agent, PID 1, exited); -no-reboot then ends QEMU.
    "panic=-1",
    // Crypto self-tests cost ~350 ms of TCG time and test nothing we control.
    "cryptomgr.notests",
    // microvm has no HPET/PM timer: TSC calibration against nothing hangs ~30% of TCG boots.
    // Only under TCG: with KVM the guest gets its TSC rate from kvmclock, and cpuinfo's
    // "cpu MHz" is the current (scaled) clock on hosts with frequency scaling, not the TSC's.
    ...(plan.accel.accel === "tcg" && plan.accel.tscKhz ? [`tsc_early_khz=${plan.accel.tscKhz}`] : []),
    "pci=off", "rdinit=/init",
    `matchlock.hostname=${hex(plan.hostname)}`,
    `matchlock.disk_mb=${plan.diskSizeMb}`,
    `matchlock.tasks_max=${GUEST_TASK_LIMIT}`,
    `matchlock.port=${AGENT_PORT_NAME}`,
    ...(mounts.length ? [`matchlock.mounts=${mounts.join(",")}`] : []),
    ...(plan.trace ? ["matchlock.trace=1"] : []),
    ...(plan.privileged ? ["matchlock.privileged=1"] : []),
    ...(plan.fuse ? ["matchlock.fuse=1"] : []),
    ...(plan.network ? [`matchlock.net=${plan.network.guestIp}/${plan.network.prefixLength},${plan.network.gateway}`] : []),
  ];
  const line = parts.join(" ");
  if (line.length >= MAX_KERNEL_CMDLINE) {
    throw new Error(`the mounts' guest paths are too long for the micro-VM's kernel command line (${line.length} of ${MAX_KERNEL_CMDLINE - 1} bytes): use fewer or shorter mount paths`);
  }
  return line;
}

/**
 * Writable shares use mapped-xattr: the guest's owners, modes and special files live in
 * extended attributes, so a guest root cannot create a setuid binary or a device node that
 * would be real on the host (with "none", QEMU would try to make them for real), and QEMU needs
 * no CAP_CHOWN or CAP_MKNOD (see jail.ts for the two capabilities it keeps for shares).
 */
export function qemuArgs(plan: VmPlan): string[] {
  if (!Number.isInteger(plan.memoryMb) || plan.memoryMb < MIN_MEMORY_MB) {
    throw new Error(`a micro-VM needs at least ${MIN_MEMORY_MB} MB of memory (asked for ${plan.memoryMb})`);
  }
  const accel = plan.accel.accel === "kvm" ? ["-accel", "kvm", "-cpu", "host"] : ["-accel", "tcg", "-cpu", "max"];
  const shares = guestMounts(plan.mounts).flatMap((m, i) =>
    m.kind === "9p"
      ? [
          // A file share's directory (the jail's tmpfs) and its file (a host file system) are two
          // devices: remap keeps their inode numbers from colliding in the guest.
          "-fsdev", `local,id=fs${i},path=${qemuOpt(m.hostPath)},${m.readonly ? "security_model=none,readonly=on" : "security_model=mapped-xattr"}${m.file ? ",multidevs=remap" : ""}`,
          "-device", `virtio-9p-device,fsdev=fs${i},mount_tag=${m.tag}`,
        ]
      : [],
  );
  // Each disk is an fd set holding the engine's descriptor; the guest's init finds the disk by serial.
  const disks = (plan.disks ?? []).flatMap((d, i) => [
    ...d.fds.flatMap((fd) => ["-add-fd", `fd=${fd},set=${i + 1}`]),
    "-drive", `file=/dev/fdset/${i + 1},format=raw,if=none,id=disk${i},readonly=${d.readonly ? "on" : "off"}`,
    "-device", `virtio-blk-device,drive=disk${i},serial=${diskSerial(i)}`,
  ]);
  return [
    "-name", `matchlock-${plan.id}`,
    "-M", "microvm", ...accel,
    // Fractional cpus (a gVisor CPU quota) round up: a VM has whole vCPUs.
    "-smp", String(Math.max(1, Math.ceil(plan.cpus))),
    "-m", String(plan.memoryMb),
    "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
    "-serial", "stdio",
    "-kernel", plan.vmlinux, "-initrd", plan.initramfs, "-append", kernelCmdline(plan),
    "-drive", `file=${qemuOpt(plan.rootImage)},format=raw,if=none,id=root,readonly=on`,
    "-device", "virtio-blk-device,drive=root",
    "-chardev", `socket,id=agent,fd=${plan.agentFd}`,
    "-device", "virtio-serial-device",
    "-device", `virtserialport,chardev=agent,name=${AGENT_PORT_NAME}`,
    ...shares,
    ...disks,
    // script=no: the engine made and addressed the tap already (tap.ts); QEMU only attaches.
    ...(plan.network
      ? ["-netdev", `tap,id=net0,ifname=${plan.network.tap},script=no,downscript=no`, "-device", `virtio-net-device,netdev=net0${plan.network.mtu && plan.network.mtu !== DEFAULT_MTU ? `,host_mtu=${plan.network.mtu}` : ""}`]
      : ["-nic", "none"]),
  ];
}

/** The virtio-blk serial of the `index`th extra disk, which guest/microvm/init.c looks for. */
export function diskSerial(index: number): string {
  return `mldisk${index}`;
}

function hex(s: string): string {
  return Buffer.from(s, "utf8").toString("hex");
}

/** QEMU's option syntax: a literal comma inside a value is written twice. */
export function qemuOpt(value: string): string {
  return value.replaceAll(",", ",,");
}
