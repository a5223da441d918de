// QEMU micro-VM backend: one `qemu-system-x86_64 -M microvm` per sandbox, booting Debian's
// kernel (PVH vmlinux) with our initramfs, the image as a shared read-only ext4 under a
// per-VM tmpfs overlay, host mounts over virtio-9p, the agent over virtio-serial and, for a
// sealed network, a virtio-net device on a tap the engine made and filters (tap.ts).
//
// The agent channel is a socketpair made at spawn time (QEMU's fd 3): no socket file, nothing
// another local process could connect to first, nothing left on disk if the engine dies.
// QEMU runs confined (jail.ts: namespaces, chroot, unprivileged user, no capabilities, seccomp).
// The VM dies with the engine twice over: the jail's wrappers and QEMU run with pdeathsig KILL,
// so the kernel kills them when the engine dies; and the engine's end of the channel closing makes the
// agent (the guest's PID 1) exit, which panics the guest kernel into a reboot that -no-reboot
// turns into QEMU's exit.
import { spawn } from "node:child_process";
import { cpuQuotaFor, removeCpuQuota } from "./cpu-quota.js";
import { mkdir, open, readFile, readdir, realpath, stat, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { AgentConnection, SandboxLostError } from "../../agent/connection.js";
import { paths } from "../../paths.js";
import { BackendUnavailableError, SETUP_COMMAND, unpackedRootfs, type BackendDriver, type Capabilities, type HostLink, type Probe, type RunningSandbox, type SandboxSpec, type BackendDisk } from "../backend.js";
import { findOnPath, settlesWithin, unlessAborted, withTimeout } from "../process-helpers.js";
import { chooseAccel, hostFacts, type AccelChoice } from "./accel.js";
import { findGuestKernel, initBinaryPath, initramfsFor } from "./guest-kernel.js";
import { qemuArgs } from "./qemu-args.js";
import { rootImageFor } from "./root-image.js";
import { ConsoleCapture } from "./console-capture.js";
import { traceStartup } from "../../trace/startup.js";
import { createVmLink, VM_TAP } from "./tap.js";
import { netnsPath } from "../host-end.js";
import { settings } from "../../../settings/settings.js";
import { MountConfigError } from "../../vfs/mounts.js";
import { JAIL_PATHS, QEMU_SANDBOX, SHARE_CAPABILITIES, jailedCommand, qemuUser, usrRootLinks } from "./jail.js";

/** TCG boots take ~2.5 s alone; several at once on two cores take proportionally longer. */
const READY_TIMEOUT_MS = 60_000;
/** QEMU's descriptor for the agent channel: stdio 0-2, then this one. */
const AGENT_FD = 3;

export function qemuBinary(): string {
  return settings.qemu.read();
}

export class MicrovmBackend implements BackendDriver {
  readonly name = "microvm";
  readonly description = "QEMU micro-VM: a Linux kernel per sandbox (KVM, else TCG emulation)";
  readonly capabilities: Capabilities = {
    // virtio-9p shares directories; a file is shared as the one file of a directory of its own (jail.ts).
    hostMounts: "files and directories",
    overlay: true,
    diskLimit: true,
    pty: false,
    network: ["host-link"],
    image: "unpacked",
  };
  private accelChoice: AccelChoice | undefined;

  /** First with KVM (hardware isolation, fast); under TCG last, after gVisor. */
  async probe(): Promise<Probe> {
    const accel = await this.accel();
    const rank = accel.accel === "kvm" ? 100 : 10;
    try {
      await this.checkAvailable();
      return { problem: undefined, rank, detail: accel.reason };
    } catch (err) {
      if (err instanceof BackendUnavailableError) return { problem: err.message, rank, detail: accel.reason };
      throw err;
    }
  }

  /** The VM's own netns, bridging a tap QEMU attaches to with a veth into the host (tap.ts). */
  async makeLink(link: HostLink): Promise<void> {
    await createVmLink(link, qemuUser());
  }

  /** KVM or TCG for this host, decided once per engine. */
  async accel(): Promise<AccelChoice> {
    this.accelChoice ??= chooseAccel(await hostFacts());
    return this.accelChoice;
  }

  private async checkAvailable(): Promise<void> {
    if (!(await findOnPath(qemuBinary()))) {
      throw new BackendUnavailableError(
        `QEMU was not found (looked for "${qemuBinary()}" on PATH): run "${SETUP_COMMAND}" (it installs qemu-system-x86)`,
      );
    }
    if (process.getuid?.() !== 0) {
      throw new BackendUnavailableError(
        "the micro-VM backend needs root: it confines each QEMU in its own namespaces and chroot as an unprivileged user. Run the engine as root, or use Config.useSudo in the SDK",
      );
    }
    for (const [tool, pkg] of [["setpriv", "util-linux"], ["unshare", "util-linux"], ["nsenter", "util-linux"], ["chroot", "coreutils"], ["mkfs.ext4", "e2fsprogs"], ["cpio", "cpio"], ["objcopy", "binutils"]] as const) {
      if (!(await findOnPath(tool))) throw new BackendUnavailableError(`the micro-VM backend needs ${tool}: run "${SETUP_COMMAND}" (it installs ${pkg})`);
    }
    if (!(await findOnPath(initBinaryPath()))) {
      throw new BackendUnavailableError(`the micro-VM's init binary is missing at ${initBinaryPath()}: reinstall matchlock (in its repository: "npm run build")`);
    }
    if (!(await findOnPath(paths.agentBinary()))) {
      throw new BackendUnavailableError(`the sandbox agent binary is missing at ${paths.agentBinary()}: reinstall matchlock (in its repository: "npm run build")`);
    }
    await findGuestKernel();
  }

  /**
   * QEMU dies with its engine (pdeathsig), and a VM's files live in its state directory; what
   * could be left is a QEMU whose engine died in a way pdeathsig missed. Find it and kill it.
   */
  async reclaim(id: string): Promise<string[]> {
    const killed: string[] = [];
    for (const pid of await readdir("/proc").catch(() => [] as string[])) {
      if (!/^\d+$/.test(pid)) continue;
      const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
      const args = cmdline.split("\0");
      if (args[0]?.includes("qemu-system") && args.some((a) => a.includes(id))) {
        try {
          process.kill(Number(pid), "SIGKILL");
          killed.push(`qemu process ${pid}`);
        } catch {
          // it went away by itself
        }
      }
    }
    await removeCpuQuota(id);
    return killed;
  }

  async start(spec: SandboxSpec): Promise<RunningSandbox> {
    if (spec.network && spec.network.kind !== "host-link") throw new Error(`the micro-VM backend has no ${spec.network.kind} network`);
    const kernel = await findGuestKernel();
    const [initramfs, rootImage, accel] = await Promise.all([
      initramfsFor(kernel, paths.agentBinary()), rootImageFor(unpackedRootfs(spec.image)), this.accel(),
    ]);
    const user = qemuUser();
    const net = spec.network;
    // QEMU sees its files at fixed places inside its jail (jail.ts), never the host's paths.
    const isFile = await Promise.all(spec.mounts.map((m) => (m.kind === "bind" ? isHostFile(m.hostPath, m.guestPath) : false)));
    const shares = spec.mounts.flatMap((m, i) => (m.kind === "bind" ? [{ host: m.hostPath, jail: JAIL_PATHS.share(i), readonly: m.readonly, file: isFile[i]!, identity: m.identity }] : []));
    const jailedMounts = spec.mounts.map((m, i) => (m.kind === "bind" ? { ...m, hostPath: JAIL_PATHS.share(i), file: isFile[i]! } : m));
    const args = [...qemuArgs({
      id: spec.id, cpus: spec.cpus, memoryMb: spec.memoryMb, diskSizeMb: spec.diskSizeMb, hostname: spec.hostname,
      privileged: spec.privileged, fuse: spec.fuse === true, accel, vmlinux: JAIL_PATHS.vmlinux, initramfs: JAIL_PATHS.initramfs, rootImage: JAIL_PATHS.rootImage, agentFd: AGENT_FD, mounts: jailedMounts,
      disks: diskFds(spec.disks ?? []),
      trace: settings.traceStartup.read() === "1",
      network: net && { tap: VM_TAP, guestIp: net.link.guestIp, prefixLength: net.link.prefixLength, gateway: net.link.hostIp, mtu: net.link.mtu },
    }), "-sandbox", QEMU_SANDBOX];
    const jailDir = join(spec.stateDir, "jail");
    await mkdir(jailDir, { mode: 0o700 });
    const kvm = accel.accel === "kvm" ? await stat("/dev/kvm") : undefined;
    const [command, commandArgs] = jailedCommand({
      dir: jailDir,
      // The real file: a link's own path may not exist inside the jail (e.g. /bin is a link to usr/bin).
      qemu: await realpath((await findOnPath(qemuBinary()))!),
      ...user,
      groups: kvm ? [kvm.gid] : [],
      files: [
        { host: kernel.vmlinux, jail: JAIL_PATHS.vmlinux },
        { host: initramfs, jail: JAIL_PATHS.initramfs },
        { host: rootImage, jail: JAIL_PATHS.rootImage },
      ],
      shares,
      devices: ["/dev/null", ...(kvm ? ["/dev/kvm"] : [])],
      ownDevices: net ? [await charDevice("/dev/net/tun")] : [],
      rootLinks: await usrRootLinks(),
      capabilities: shares.length > 0 ? SHARE_CAPABILITIES : [],
      netns: net ? netnsPath(net.link) : undefined,
    }, args);
    traceStartup("microvm: kernel, initramfs and root image ready");

    const quota = await cpuQuotaFor(spec.id, spec.cpus);
    const [program, programArgs] = quota ? quota.wrap(command, commandArgs) : [command, commandArgs];
    let log: FileHandle, diskFiles: FileHandle[];
    try {
      log = await open(spec.logFile, "a");
      await log.write(`microvm: ${accel.reason}; kernel ${kernel.release}\n`);
      // Opened here, as root, and inherited by QEMU after its descriptors 0-3 (AGENT_FD).
      diskFiles = await openDisks(spec.disks ?? []);
    } catch (err) {
      await quota?.remove(); // nothing will stop this VM: its quota group goes now
      throw err;
    }
    // A process group of its own: QEMU is the init of its pid namespace, which a signal to its
    // parent's process (unshare) does not reach, nor pdeathsig; a SIGKILL to the group does.
    const child = spawn(program, programArgs, {
      detached: true,
      stdio: ["ignore", "pipe", "pipe", "pipe", ...diskFiles.map((f) => f.fd)],
    });
    await Promise.all(diskFiles.map((f) => f.close())); // QEMU has its own copies
    traceStartup("microvm: QEMU spawned");
    const consoleOut = new ConsoleCapture(log);
    child.stdout!.on("data", (d: Buffer) => consoleOut.write(d));
    child.stderr!.on("data", (d: Buffer) => consoleOut.write(d));
    const exited = new Promise<number | null>((resolve) => {
      // "close", not "exit": by then the console output is fully read, for error messages.
      child.once("close", (code, signal) => resolve(code ?? (signal ? -1 : null)));
      child.once("error", (err) => { consoleOut.write(Buffer.from(`could not start QEMU: ${err.message}\n`)); resolve(null); });
    });

    const channel = child.stdio[AGENT_FD] as Readable & Writable;
    const agent = new AgentConnection(channel, channel);
    exited.then((code) => agent.lose(new SandboxLostError(`the micro-VM exited (QEMU status ${code ?? "unknown"})`)));
    const stop = async (graceMs: number) => {
      agent.shutdown(); // the agent (PID 1) exits, the guest panics and QEMU exits (-no-reboot)
      if (!(await settlesWithin(exited, graceMs))) {
        try {
          process.kill(-child.pid!, "SIGKILL");
        } catch {
          child.kill("SIGKILL"); // no group (it never started): the process itself
        }
        await exited;
      }
      await consoleOut.close();
      await quota?.remove();
    };
    try {
      await withTimeout(unlessAborted(agent.ready, spec.signal), READY_TIMEOUT_MS, "the sandbox agent did not become ready in time");
      traceStartup("microvm: agent ready");
      await installGuestFiles(agent, net?.guestFiles ?? []);
    } catch (err) {
      await stop(0);
      const tail = consoleOut.tail();
      throw new Error(`failed to start the micro-VM: ${(err as Error).message}${tail ? `\n${tail}` : ""}`);
    }
    return { agent, pid: child.pid, stop };
  }
}

/** QEMU's descriptor numbers of the disks' files, in the order openDisks opens them (after AGENT_FD). */
function diskFds(disks: BackendDisk[]): Array<{ fds: number[]; readonly: boolean; guestPath: string }> {
  let next = AGENT_FD + 1;
  return disks.map((d) => ({ fds: d.readonly ? [next++] : [next++, next++], readonly: d.readonly, guestPath: d.guestPath }));
}

/** The disks' images: read-only, and read-write too for a writable disk (see VmPlan.disks). */
async function openDisks(disks: BackendDisk[]): Promise<FileHandle[]> {
  const files: FileHandle[] = [];
  try {
    for (const d of disks) {
      files.push(await open(d.held ?? d.hostPath, "r"));
      if (!d.readonly) files.push(await open(d.held ?? d.hostPath, "r+"));
    }
  } catch (err) {
    await Promise.all(files.map((f) => f.close()));
    throw new Error(`cannot open the extra disk: ${(err as Error).message}`);
  }
  return files;
}

/** A host character device's numbers, to make the same device in QEMU's jail. */
async function charDevice(path: string): Promise<{ path: string; major: number; minor: number }> {
  const { rdev } = await stat(path);
  // Linux's dev_t: major in bits 8-19 (and 32-43), minor in bits 0-7 and 20-31.
  return { path, major: ((rdev >> 8) & 0xfff), minor: (rdev & 0xff) | ((rdev >> 12) & 0xfff00) };
}

export const microvmDriver = new MicrovmBackend();

/**
 * The seal's files (resolver, CA, trust bundles) written into the guest's root overlay before the
 * first exec: QEMU shares only directories, and sharing the seal's directory would cost every
 * networked boot the 9p stack. Unlike gVisor's read-only binds the guest's root can change them,
 * which only breaks its own name resolution or TLS: the seal is enforced on the host.
 */
async function installGuestFiles(agent: AgentConnection, files: Array<{ guestPath: string; hostPath: string }>): Promise<void> {
  for (const f of files) {
    try {
      await agent.writeFile(f.guestPath, 0o644, await readFile(f.hostPath));
    } catch (err) {
      throw new Error(`could not install the network seal's ${f.guestPath} in the guest: ${(err as Error).message}`);
    }
  }
}

/** A checked host path may have been changed since (the jail's bind then proves which object it is). */
async function isHostFile(hostPath: string, guestPath: string): Promise<boolean> {
  try {
    return (await stat(hostPath)).isFile();
  } catch (err) {
    throw new MountConfigError(`mount ${guestPath}: host path ${hostPath} changed while it was being mounted (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); host paths must not contain symlinks`);
  }
}
