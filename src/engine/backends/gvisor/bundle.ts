// Builds the OCI runtime bundle (config.json) that runsc runs: the agent as the container's
// init, the image rootfs under a memory overlay, our mounts, limits.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { SandboxSpec } from "../backend.js";
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
      args: [GUEST_AGENT_PATH],
      env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
      cwd: "/",
      // Default Docker-like capability set: the sandbox's root is not the host's root,
      // and gVisor enforces these against its own kernel.
      capabilities: capabilitySet(),
      noNewPrivileges: false,
      rlimits: [{ type: "RLIMIT_NPROC", soft: GUEST_TASK_LIMIT, hard: GUEST_TASK_LIMIT }],
    },
    // Writable for the guest, but runsc's --overlay2=root:memory keeps every change in the
    // sandbox's memory. The path is the per-sandbox overlay of private-mounts.ts, not the
    // image's directory, which takes runsc's own mount points.
    root: { path: spec.rootfs, readonly: false },
    hostname: spec.hostname,
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
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

function capabilitySet(): Record<string, string[]> {
  const caps = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
  ];
  return { bounding: caps, effective: caps, permitted: caps, inheritable: caps, ambient: [] };
}

export async function writeBundle(spec: SandboxSpec, agentBinary: string, netnsPath?: string): Promise<string> {
  const dir = join(spec.stateDir, "bundle");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(join(dir, "config.json"), JSON.stringify(ociConfig(spec, agentBinary, netnsPath), null, 2));
  return dir;
}
