// Builds the OCI runtime bundle (config.json) that runsc runs: the agent as the container's
// init, the image rootfs under a memory overlay, our mounts, limits.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { unpackedRootfs, type SandboxSpec } from "../backend.js";
import { GUEST_TASK_LIMIT } from "../task-limit.js";

/** Where the agent binary appears inside the sandbox. */
export const GUEST_AGENT_PATH = "/.matchlock/agent";

const CPU_PERIOD_US = 100_000;

/**
 * Host tasks (threads) the whole sandbox may use: runsc's own (~30 idle) and those running
 * its guest. On the ptrace platform a guest process costs ~10-15 host tasks and more with
 * churn (each Sentry thread that ran in an address space keeps a stub thread there, and idle
 * address spaces are pooled, not freed): 256 live guest processes (GUEST_TASK_LIMIT) took
 * ~2,700-4,700 here. A guest that gets past that anyway (forking as many users) reaches this
 * limit, and then the Sentry, unable to make a thread, dies: its own sandbox is stopped, the
 * host keeps its PIDs.
 */
export const HOST_TASK_LIMIT = 8192;

export function ociConfig(spec: SandboxSpec, agentBinary: string, netnsPath?: string): Record<string, unknown> {
  // Parents before children, so a mount at /workspace/src lands inside the /workspace mount.
  const mounts = [...spec.mounts].sort((a, b) => a.guestPath.split("/").length - b.guestPath.split("/").length);
  // gVisor's tmpfs has no size cap of its own and lives in the sandbox's memory: unbounded, a
  // guest filling one hits the cgroup limit and the whole sandbox is killed. Cap each at half
  // the memory, as Linux (and so the micro-VM) does, so a full one is ENOSPC instead.
  const tmpfsSize = `size=${Math.max(1, Math.floor(spec.memoryMb / 2))}m`;
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      // Unprivileged, the agent also confines each command itself (capabilities, no_new_privs,
      // seccomp), exactly as in a micro-VM, whose guest kernel has no OCI runtime.
      // --tty-signals: this gVisor's terminals do not turn ctrl-C, ctrl-\ and ctrl-Z into signals.
      // --cpus: runsc shows the guest max(2, ceil(cpus)) CPUs, at most the host's
      // (--cpu-num-from-quota); the agent confines its commands to ceil(cpus) of them (limit_cpus).
      args: [GUEST_AGENT_PATH, "--tty-signals", "--cpus", String(Math.ceil(spec.cpus)), ...(spec.privileged ? ["--privileged"] : [])],
      env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
      cwd: "/",
      // Docker's default capability set (every capability when privileged): the sandbox's root
      // is not the host's root, and gVisor enforces these against its own kernel.
      // The agent mounts the intercepting file system itself (CAP_SYS_ADMIN); the commands it
      // starts drop back to the default set (guest/agent/confine.c).
      capabilities: capabilitySet(spec.privileged ? ALL_CAPABILITIES : spec.fuse ? [...DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"] : DEFAULT_CAPABILITIES),
      noNewPrivileges: !spec.privileged,
      rlimits: [{ type: "RLIMIT_NPROC", soft: GUEST_TASK_LIMIT, hard: GUEST_TASK_LIMIT }],
    },
    // Writable for the guest, but runsc's --overlay2 keeps every change in its filestore, on a
    // tmpfs of the disk size (private-mounts.ts' rootWritesDir). The path is the per-sandbox overlay of private-mounts.ts, not the
    // image's directory, which takes runsc's own mount points.
    root: { path: unpackedRootfs(spec.image), readonly: false },
    hostname: spec.hostname,
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
      // Terminals for exec_tty: the agent may not mount devpts itself here (no CAP_SYS_ADMIN).
      { destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
      { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
      { destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777", tmpfsSize] },
      { destination: GUEST_AGENT_PATH, type: "bind", source: agentBinary, options: ["rbind", "ro"] },
      ...mounts.map((m) =>
        m.kind === "tmpfs"
          ? { destination: m.guestPath, type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=755", tmpfsSize] }
          : { destination: m.guestPath, type: "bind", source: m.hostPath, options: ["rbind", m.readonly ? "ro" : "rw"] },
      ),
    ],
    linux: {
      namespaces: [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }, netnsPath ? { type: "network", path: netnsPath } : { type: "network" }],
      cgroupsPath: `/matchlock/${spec.id}`,
      resources: {
        memory: { limit: spec.memoryMb * 1024 * 1024 },
        cpu: { quota: Math.round(spec.cpus * CPU_PERIOD_US), period: CPU_PERIOD_US },
        pids: { limit: HOST_TASK_LIMIT },
      },
    },
  };
}

/**
 * Docker's default set without CAP_NET_RAW, which runsc withholds anyway (raw sockets need its
 * --net-raw) and the network seal makes useless (it drops ICMP and every raw IP packet). The
 * agent's DEFAULT_CAPS (guest/agent/confine.c) is the same set, so both engines agree.
 */
export const DEFAULT_CAPABILITIES = [
  "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
  "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
];

/** For privileged sandboxes: every capability this runsc knows (up to CAP_AUDIT_READ; it refuses later ones). */
const ALL_CAPABILITIES = [
  "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
  "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
  "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
  "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
  "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
  "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
  "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
  "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
];

/** Nothing inheritable or ambient (as Docker since 20.10.14): exec of a file with capabilities gains none. */
function capabilitySet(caps: string[]): Record<string, string[]> {
  return { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] };
}

export async function writeBundle(spec: SandboxSpec, agentBinary: string, netnsPath?: string): Promise<string> {
  const dir = join(spec.stateDir, "bundle");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(join(dir, "config.json"), JSON.stringify(ociConfig(spec, agentBinary, netnsPath), null, 2));
  return dir;
}
