// gVisor backend: one `runsc run` process per sandbox, with the agent as the container's init
// talking over runsc's stdio. Because runsc is our child and holds the agent's stdin, the
// sandbox dies with the engine: if the engine is killed, the agent reads EOF and exits, and
// runsc tears the sandbox down (no subreaper needed, no orphaned sandbox).
import { spawn, type ChildProcess } from "node:child_process";
import { access, constants, mkdir, open, readdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { AgentConnection, OutOfMemoryError, SandboxLostError } from "../../agent/connection.js";
import { paths } from "../../paths.js";
import { BackendUnavailableError, unpackedRootfs, type BackendDriver, type Capabilities, type HostLink, type Probe, type RunningSandbox, type SandboxSpec } from "../backend.js";
import { GUEST_AGENT_PATH, HOST_TASK_LIMIT, writeBundle } from "./bundle.js";
import { logTail, settlesWithin, unlessAborted, withTimeout } from "../process-helpers.js";
import { createNetns } from "./netns.js";
import { netnsPath } from "../host-end.js";
import { checkDiskForHostKernel, checkLoopDevices, loopDisksReleased } from "./loop-disks.js";
import { boundOnHost, diskMountPath, inPrivateMounts, privateRootfs, rootWritesDir } from "./private-mounts.js";
import { traceStartup } from "../../trace/startup.js";
import { MemoryCgroup, hostTaskLimitReached, removeSandboxCgroups } from "./memory-cgroup.js";
import { runscChoice, sandboxFlags, type RunscChoice } from "./runsc-choice.js";

const READY_TIMEOUT_MS = 30_000;

export class GvisorBackend implements BackendDriver {
  readonly name = "gvisor";
  readonly description = "gVisor (runsc): a user-space kernel per sandbox";
  readonly capabilities: Capabilities = {
    hostMounts: "files and directories",
    overlay: true,
    // The root's writable layer is a tmpfs of disk_size_mb (private-mounts.ts' rootWritesDir).
    diskLimit: true,
    pty: false,
    network: ["host-link"],
    image: "unpacked",
  };

  /** Ranked below a micro-VM with KVM and above one under TCG (see registry.ts). */
  async probe(): Promise<Probe> {
    try {
      const runsc = await this.checkAvailable();
      const detail = `runsc ${runsc.version} on ${runsc.platform} (${runsc.platformReason}); binary ${runsc.binary}: ${runsc.binaryReason}`;
      return { problem: undefined, rank: 50, detail };
    } catch (err) {
      if (err instanceof BackendUnavailableError) return { problem: err.message, rank: 50, detail: "runsc, as root" };
      throw err;
    }
  }

  /** A fresh netns with a veth pair into it: runsc takes over the veth it finds there. */
  async makeLink(link: HostLink): Promise<void> {
    await createNetns(link);
  }

  private async checkAvailable(): Promise<RunscChoice> {
    // Root first: a user without it learns that before any missing package.
    if (process.getuid?.() !== 0) {
      throw new BackendUnavailableError(
        "the gVisor backend needs root: runsc creates namespaces and cgroups for each sandbox. Run the engine as root, or use Config.useSudo in the SDK",
      );
    }
    for (const [what, binary] of [["sandbox agent binary", paths.agentBinary()], ["set-id guard (host/setid-guard)", paths.setidGuard()], ["private-mounts helper (host/private-mounts)", paths.privateMounts()]]) {
      try {
        await access(binary, constants.X_OK);
      } catch {
        throw new BackendUnavailableError(`the ${what} is missing at ${binary}: reinstall matchlock (in its repository: "npm run build")`);
      }
    }
    return runscChoice();
  }

  async reclaim(id: string): Promise<string[]> {
    // runsc keeps "<id>_sandbox:<id>.state" in its root while the container exists.
    const cleaned: string[] = [];
    const runsc = await runscChoice().catch(() => undefined); // without a runsc, only its files are left
    if (await runscFilesOf(id).then((f) => f.length > 0)) {
      if (runsc) await runRunsc(runsc, ["delete", "--force", id]); // also kills stray sandbox processes and removes its cgroups
      await removeRunscFiles(id);
      cleaned.push("runsc container");
    }
    const cgroups = await removeSandboxCgroups(id);
    if (cgroups.length > 0) cleaned.push(`cgroups (${cgroups.join(", ")})`);
    return cleaned;
  }

  async start(spec: SandboxSpec): Promise<RunningSandbox> {
    if (spec.network && spec.network.kind !== "host-link") throw new Error(`the gVisor backend has no ${spec.network.kind} network`);
    const runsc = await runscChoice();
    const netns = spec.network && netnsPath(spec.network.link);
    // The seal's files (resolver, CA, trust bundles) as read-only binds over the image's own.
    const sealFiles = (spec.network?.guestFiles ?? []).map((f) => ({ kind: "bind" as const, ...f, readonly: true }));
    const rootfs = privateRootfs(spec.stateDir);
    await mkdir(dirname(rootfs), { mode: 0o700 });
    // The agent binary too is a read-only host file: bound read-only on the host like the rest.
    const agentMount = { kind: "bind" as const, guestPath: GUEST_AGENT_PATH, hostPath: paths.agentBinary(), readonly: true };
    const { mounts: [agentBind, ...mounts], binds } = boundOnHost(spec.stateDir, [agentMount, ...spec.mounts, ...sealFiles]);
    const agentSource = (agentBind as typeof agentMount).hostPath;
    const disks = spec.disks ?? [];
    if (disks.length > 0) await checkLoopDevices();
    for (const d of disks) await checkDiskForHostKernel(d.hostPath, d.held);
    // Each extra disk is loop-mounted in the private namespace and handed to runsc as a bind of
    // its mount point (a read-only disk is mounted read-only there, by the host kernel).
    const diskBinds = disks.map((d, i) => ({ kind: "bind" as const, guestPath: d.guestPath, hostPath: diskMountPath(spec.stateDir, i), readonly: d.readonly }));
    const bundle = await writeBundle({ ...spec, image: { ...spec.image, kind: "unpacked", rootfs }, mounts: [...mounts, ...diskBinds] }, agentSource, netns);
    traceStartup("gvisor: bundle written");
    const memory = MemoryCgroup.of(spec.id);
    const log = await open(spec.logFile, "a");
    const writes = rootWritesDir(spec.stateDir);
    // runsc splits the flag at ':' and ','; a state directory named with either cannot be said there.
    if (/[:,]/.test(writes)) throw new Error(`the sandbox's state directory ${spec.stateDir} has a ':' or ',' in its path, which runsc's --overlay2 cannot take: set MATCHLOCK_HOME to a path without them`);
    const runArgs = [...globalFlags(runsc, netns ? "sandbox" : "none", `${runsc.overlayDirPrefix}${writes}`), "run", "--bundle", bundle, spec.id];
    const [cmd, args] = inPrivateMounts(spec.stateDir, unpackedRootfs(spec.image), netns !== undefined, spec.diskSizeMb, binds, runsc.binary, runArgs, disks);
    // runsc's gofer, host root, would apply a guest's chmod u+s or g+s to the files of a
    // read-write host mount: under the guard those calls fail (EPERM) on the host.
    const child = spawn(paths.setidGuard(), [cmd, ...args], {
      stdio: ["pipe", "pipe", log.fd],
    });
    traceStartup("gvisor: runsc spawned");
    await log.close(); // the child has its own copy of the descriptor
    const outOfMemory = async () => {
      if (memory && (await memory.oomKilled())) {
        return new OutOfMemoryError(`out of memory: the sandbox used more than its memory limit of ${spec.memoryMb} MiB, and the host's OOM killer stopped it with everything running in it`);
      }
      if (await hostTaskLimitReached(spec.id)) {
        return new SandboxLostError(`the sandbox reached its limit of ${HOST_TASK_LIMIT} host tasks (gVisor runs each guest process on several host threads) and stopped: too many processes or threads at once`);
      }
      return undefined;
    };
    const agent = new AgentConnection(child.stdin!, child.stdout!, outOfMemory);
    child.once("error", (err) => agent.lose(new SandboxLostError(`could not start runsc: ${err.message}`)));
    // A runsc that could not be spawned never emits "exit": count "error" as the end too.
    const exited = new Promise<number | null>((resolve) => {
      child.once("exit", (code) => resolve(code));
      child.once("error", () => resolve(null));
    });
    exited.then((code) => agent.loseExplained(new SandboxLostError(`the sandbox exited (runsc status ${code ?? "killed"})`)));

    const stop = async (graceMs: number) => {
      await stopSandbox(runsc, spec.id, child, agent, exited, graceMs);
      // Stopped means the writable disks are free for the next sandbox: their loop devices are
      // gone too. (A read-only disk may be shared: another sandbox's device may stay, rightly.)
      const writable = disks.filter((d) => !d.readonly).map((d) => d.hostPath);
      if (writable.length > 0) await loopDisksReleased(writable);
      // runsc removes its cgroups when it exits or deletes its container; one killed before it
      // recorded the container (a create cut short) cannot, and the record may be gone for gc.
      // Their removal waits for the sandbox's processes to end: none can make a file after it.
      await removeSandboxCgroups(spec.id);
      await removeRunscFiles(spec.id);
    };
    try {
      await withTimeout(unlessAborted(agent.ready, spec.signal), READY_TIMEOUT_MS, "the sandbox agent did not become ready in time");
    } catch (err) {
      await stop(0);
      const tail = await logTail(spec.logFile);
      throw new Error(`failed to start the gVisor sandbox: ${(err as Error).message}${tail ? `\n${tail}` : ""}`);
    }
    return { agent, pid: child.pid, stop };
  }
}

export const gvisorDriver = new GvisorBackend();

/** `rootMedium`: where the root overlay's writes go (runsc's --overlay2 medium; `run` gives a directory). */
function globalFlags(runsc: RunscChoice, network: "none" | "sandbox" = "none", rootMedium = "memory"): string[] {
  return ["--root", paths.runscRoot(), `--platform=${runsc.platform}`, `--network=${network}`, `--overlay2=root:${rootMedium}`, ...sandboxFlags(runsc.hasDirectfs)];
}

async function stopSandbox(
  runsc: RunscChoice, id: string, child: ChildProcess, agent: AgentConnection, exited: Promise<number | null>, graceMs: number,
): Promise<void> {
  agent.shutdown(); // the agent kills every exec's process group and exits; runsc follows
  if (!(await settlesWithin(exited, graceMs))) {
    await runRunsc(runsc, ["kill", id, "KILL"]);
    if (!(await settlesWithin(exited, 2000))) child.kill("SIGKILL");
    await exited;
  }
  // `runsc run` removes its container on a clean exit; after a forced stop make sure.
  await runRunsc(runsc, ["delete", "--force", id]);
}

/**
 * runsc's files for a container in its root: "<id>_sandbox:<id>.state" and its lock, and the
 * sandbox's control socket "runsc-<id>.sock", which a sandbox killed while `runsc run` was still
 * creating it leaves behind.
 */
async function runscFilesOf(id: string): Promise<string[]> {
  return (await readdir(paths.runscRoot()).catch(() => [] as string[])).filter((n) => n.startsWith(`${id}_`) || n === `runsc-${id}.sock`);
}

/**
 * What `runsc delete` cannot remove: a runsc killed early in `run` leaves its lock file but no
 * container state, so for runsc there is no container to delete.
 */
async function removeRunscFiles(id: string): Promise<void> {
  for (const f of await runscFilesOf(id)) await rm(join(paths.runscRoot(), f), { force: true });
}

function runRunsc(runsc: RunscChoice, args: string[]): Promise<void> {
  return new Promise((resolve) => {
    const p = spawn(runsc.binary, [...globalFlags(runsc), ...args], { stdio: "ignore" });
    p.once("error", () => resolve());
    p.once("exit", () => resolve());
  });
}
