// One sandbox's lifecycle: state record, image, mounts, backend start, exec and file
// operations through the agent, and teardown. Shared by `matchlock rpc` and `matchlock run`.
import { randomBytes } from "node:crypto";
import { posix } from "node:path";
import { SandboxTimedOutError, type ExecSink } from "../agent/connection.js";
import type { CancelSwitch } from "../agent/cancel-switch.js";
import type { ExecInput } from "../agent/exec-input.js";
import { startEntrypoint } from "./entrypoint.js";
import { shellQuote } from "./shell-quote.js";
import { AgentReadStream, AgentWriteStream } from "../agent/file-streams.js";
import { BackendUnavailableError, UnsupportedByBackendError, type BackendDriver, type RunningSandbox } from "../backends/backend.js";
import type { ImageConfig, LocalImage } from "../image/types.js";
import { HeldHostPaths, resolveMounts } from "../vfs/mounts.js";
import { hideMounts, startInterception, type FileEvent } from "../vfs/interception/guest-mounts.js";
import { removeSnapshotDisk } from "../vfs/snapshot-disk.js";
import { backendDisks } from "../disks/extra-disks.js";
import { lockDisk, unlockDisks } from "../disks/disk-locks.js";
import { applyImageConfig, type SandboxConfig } from "./create-config.js";
import { createVmRecord, logFile, markStopped, newVmId, removeVmDir, updateVmConfig } from "./state.js";
import { paths } from "../paths.js";
import { resolveUser, type GuestFileReader, type ResolvedUser } from "./users.js";
import { toWireFileInfo } from "./file-mode.js";
import { makeDir, removePath, renamePath, statPath } from "../agent/file-ops.js";
import { ErrorCode, type WireFileInfo } from "../../protocol/rpc.js";
import type { NetworkEventSink } from "../net/events.js";
import { NetworkPolicy, type AllowListChange, type SecretRule } from "../net/policy.js";
import type { NetworkSeal } from "../net/seal.js";
import { traceStartup } from "../trace/startup.js";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";
import { PortForwards } from "../ports/port-forwards.js";

/** Largest /etc/passwd or /etc/group we read to resolve the image's USER. */
const MAX_ACCOUNT_FILE = 4 * 1024 * 1024;

/** Largest file `read_file` returns in one response. */
export const MAX_READ_BYTES = 64 * 1024 * 1024;

/** The client gave up on a create: what was being made is stopped and its state removed. */
export class CreateCancelledError extends EngineError {
  readonly kind: ErrorKind = "cancelled";
}

/** The image could not be found or used; reported as a VM failure. */
export class ImageNotFoundError extends EngineError {
  readonly kind: ErrorKind = "not_found";
}

export interface ExecOptions {
  workingDir?: string | undefined;
  user?: string | undefined;
  /** Set over the sandbox's environment for this command only. */
  env?: Readonly<Record<string, string>> | undefined;
  /** Stops the command when flipped (a plain switch, not an AbortSignal: see cancel-switch.ts). */
  cancel?: CancelSwitch | undefined;
  /** The command's stdin (exec_pipe), on a terminal when it has a size (exec_tty). */
  input?: ExecInput | undefined;
}

export interface ExecOutcome {
  exitCode: number;
  /** Signal number when the command was killed by one. */
  signal: number | undefined;
  /** The kernel's OOM killer killed it (reported by the agent; micro-VMs). */
  outOfMemory: boolean;
  durationMs: number;
}

export class Sandbox {
  private closing: Promise<void> | undefined;
  private deadline: NodeJS.Timeout | undefined;
  /** Every set of port forwards on this sandbox (its own, and other sessions'): closed with it. */
  private readonly portSets = new Set<PortForwards>();
  /** This sandbox's own forwards: its session's `port_forward`, and create's `port_forwards`. */
  readonly ports: PortForwards;

  private constructor(
    readonly id: string,
    readonly config: SandboxConfig,
    private readonly running: RunningSandbox,
    /** The composed env, without a HOME the image or the request did not set. */
    private readonly baseEnv: readonly string[],
    private readonly defaultUser: ResolvedUser,
    private readonly defaultCwd: string,
    private readonly seal: NetworkSeal | undefined,
    /** The image's config with the create's image_config over it (what `matchlock run` composes its command from). */
    readonly imageConfig: ImageConfig,
  ) {
    this.defaultEnv = withHome(baseEnv, defaultUser.home);
    this.ports = this.openPortForwards();
  }

  /** The default user's env, made once: a plain exec allocates none. */
  private readonly defaultEnv: readonly string[];

  /**
   * Creates and boots a sandbox from a checked request (see create.ts, which finds the image and
   * checks the driver first). On any failure nothing is left: no process, link or record.
   * The network is sealed (policy, DNS, proxy) when interception is on; otherwise there is none.
   */
  static async create(
    config: SandboxConfig, backend: BackendDriver, image: LocalImage, net: SandboxNetworkOptions = {}, signal?: AbortSignal,
  ): Promise<Sandbox> {
    const secretRules = net.secrets ?? [];
    const { problem } = await backend.probe();
    if (problem) throw new BackendUnavailableError(problem);
    traceStartup("create: backend checked");
    if (signal?.aborted) throw new CreateCancelledError("create cancelled before the sandbox was made");
    const id = newVmId();
    net.onRecord?.(id); // before the record exists, so no `kill` can name it unseen
    let running: RunningSandbox | undefined;
    let seal: NetworkSeal | undefined;
    let made: Sandbox | undefined;
    const disks = backendDisks(config);
    const held = new HeldHostPaths();
    try {
      const stateDir = await createVmRecord(id, { ...config, backend: backend.name }, net.spare);
      traceStartup("create: record written");
      // Held from here on (no link on the path, the object it named then); before anything
      // mounts them, a disk another running sandbox has is refused.
      for (const d of disks) d.held = (await held.hold(d.hostPath, d.guestPath)).held;
      for (const d of disks) await lockDisk(id, d.hostPath, d.readonly, `extra disk ${d.hostPath}`);
      const resolved = await resolveMounts(config.workspace, config.mounts, stateDir, config.diskSizeMb, held);
      // Intercepted mounts are made at hidden paths; the agent serves them through the rules.
      const { mounts, served } = config.vfsInterception ? await hideMounts(resolved, config.extraDisks.map((d) => d.guestMount)) : { mounts: resolved, served: undefined };
      if (interceptionOn(config, secretRules)) {
        const policy = new NetworkPolicy({ allowedHosts: config.network.allowedHosts, blockPrivateIps: config.network.blockPrivateIps, secrets: secretRules });
        // Loaded only here: its TLS certificate code costs ~150 ms of start-up that sandboxes
        // without interception should not pay.
        const { NetworkSeal } = await import("../net/seal.js");
        seal = await NetworkSeal.open({ vmId: id, stateDir, rootfs: image.rootfs, policy, dnsServers: config.network.dnsServers, interception: config.network.interception, onEvent: net.onEvent ?? (() => {}), log: net.log ?? (() => {}) });
      }
      if (seal) {
        // The network comes up in one order for every driver: the link, the seal on its host
        // end (DNS, proxy, firewall), then the boot, so the guest's first packet meets the seal.
        if (!backend.makeLink || !backend.capabilities.network.includes("host-link")) {
          throw new UnsupportedByBackendError(`the ${backend.name} backend cannot join a sealed network on this host`);
        }
        await backend.makeLink({ ...seal.link, prefixLength: seal.prefixLength, mtu: config.network.mtu });
        await seal.attach();
      }
      // Upstream's default hostname is the VM id (spec 5.2).
      const hostname = config.network.hostname || id;
      running = await backend.start({
        id, image: { kind: "unpacked", ref: config.image, rootfs: image.rootfs },
        cpus: config.cpus, memoryMb: config.memoryMb, diskSizeMb: config.diskSizeMb, hostname,
        privileged: config.privileged, mounts, fuse: served !== undefined, disks, stateDir, logFile: logFile(id), signal,
        network: seal && { kind: "host-link", link: { ...seal.link, prefixLength: seal.prefixLength, mtu: config.network.mtu }, guestFiles: seal.guestFiles },
      }).finally(() => held.release());
      traceStartup("create: backend started, agent ready");
      await writeHostFiles(running.agent, hostname, config.network.addHosts);
      traceStartup("create: /etc/hostname and /etc/hosts written");
      const placeholders = Object.fromEntries(secretRules.map((s) => [s.name, s.placeholder]));
      const imageConfig = applyImageConfig(image.config, config.imageConfig);
      const env = composeEnv(imageConfig.env, config.env, { ...(seal?.guestEnv ?? {}), ...placeholders });
      const agent = running.agent;
      if (served) await startInterception(agent, served, config.vfsInterception!, net.onFileEvent ?? (() => {}));
      // The image's USER is looked up in its own /etc/passwd, read inside the sandbox: on the
      // host, the image's symlinks could point the engine at host files.
      const user = await resolveUser(guestFileReader(agent), imageConfig.user);
      traceStartup("create: user resolved");
      signal?.throwIfAborted();
      // The image's WORKDIR, as upstream and Docker run commands; else the workspace.
      const sandbox = (made = new Sandbox(id, config, running, env, user, imageConfig.workingDir || config.workspace, seal, imageConfig));
      if (imageConfig.workingDir) await sandbox.makeWorkingDir(imageConfig.workingDir);
      // Before the entrypoint: a port that cannot be bound fails the create before it starts anything.
      const { forwards, addresses } = config.portForwards;
      if (forwards.length > 0) await sandbox.ports.replace(forwards, addresses);
      if (config.launchEntrypoint) {
        // It runs until it ends or the sandbox stops (stopping the sandbox ends every process).
        await startEntrypoint((c, o, s) => sandbox.exec(c, o, s), imageConfig, logFile(id));
      }
      // A spare's time starts when a client takes it (warm-pool.ts).
      if (!net.spare) sandbox.setDeadline(config.deadlineSeconds);
      return sandbox;
    } catch (err) {
      // A refused create is undone whole: the client never learns this id, so no record may
      // stay for it to find and remove. Only a sandbox that could not be stopped keeps its
      // record (as stopped), for `matchlock gc` to reclaim.
      await made?.closePorts();
      await held.release();
      const stoppedCleanly = await (running?.stop(0) ?? Promise.resolve()).then(() => true, () => false);
      await seal?.close();
      await markStopped(id);
      await removeSnapshotDisk(paths.vm(id));
      if (stoppedCleanly) await unlockDisks(id, disks.map((d) => d.hostPath));
      if (stoppedCleanly) await removeVmDir(id);
      if (signal?.aborted) {
        const what = stoppedCleanly ? "was stopped and its state removed" : "could not be stopped; its record stays for gc";
        throw new CreateCancelledError(`create cancelled: sandbox ${id} ${what}`, { cause: err });
      }
      throw err;
    }
  }

  /** Docker makes a missing WORKDIR at run time; so does create (as root). */
  private async makeWorkingDir(dir: string): Promise<void> {
    const failed: Buffer[] = [];
    const keep = (d: Buffer) => void failed.push(d);
    const out = await this.exec(`mkdir -p -- ${shellQuote(dir)}`, { workingDir: "/", user: "0:0" }, { stdout: keep, stderr: keep });
    if (out.exitCode !== 0) throw new Error(`cannot make the working directory ${dir}: ${Buffer.concat(failed).toString().trim()}`);
  }

  /**
   * Stops the sandbox `seconds` from now (undefined: never), replacing any earlier deadline;
   * every pending and later call then says why.
   */
  setDeadline(seconds: number | undefined): void {
    clearTimeout(this.deadline);
    this.deadline = undefined;
    if (seconds === undefined) return;
    this.deadline = setTimeout(() => {
      this.running.agent.lose(new SandboxTimedOutError(`the sandbox reached its timeout of ${seconds} s and was stopped`));
      void this.close().catch(() => {});
    }, seconds * 1000);
    this.deadline.unref();
  }

  /**
   * Changes the allow-list at runtime (spec 5.5): new DNS answers, connections and requests follow
   * it at once; open connections keep what they were allowed. Only a sealed sandbox has one.
   */
  async changeAllowList(change: "add" | "delete", hosts: readonly string[]): Promise<AllowListChange> {
    if (!this.seal) throw new AllowListUnavailableError("allow-list updates unavailable: sandbox was started without network interception");
    const result = change === "add" ? this.seal.policy.addAllowedHosts(hosts) : this.seal.policy.removeAllowedHosts(hosts);
    // An address the list names (or no longer names) is dialled directly: the firewall follows.
    await this.seal.syncLiteralAddresses();
    // The record shows the list as it is when each write runs (so the last write has the latest),
    // never once the sandbox is stopping: its record may be going. The change itself has taken
    // effect, so a record that cannot be written is only logged.
    const seal = this.seal;
    this.recordWrites = this.recordWrites
      .then(() => {
        if (this.stopped) return;
        const allowedHosts = [...seal.policy.allowList];
        return updateVmConfig(this.id, (c) => void (c.network = { ...(c.network as Record<string, unknown> | undefined), allowedHosts }));
      })
      .catch((err: Error) => void process.stderr.write(`matchlock: ${this.id}: the record's allow-list was not updated: ${err.message}\n`));
    await this.recordWrites;
    return result;
  }

  /** The record's runtime updates, one after another. */
  private recordWrites: Promise<void> = Promise.resolve();

  /** Whether close() was called (the sandbox is stopping or stopped). */
  get stopped(): boolean {
    return this.closing !== undefined;
  }

  get lost(): Error | undefined {
    return this.running.agent.lost;
  }

  /** A set of port forwards for another session (e.g. `matchlock port-forward`); it ends with the sandbox. */
  openPortForwards(log?: (line: string) => void): PortForwards {
    const set = new PortForwards(this.running.agent, log);
    this.portSets.add(set);
    return set;
  }

  /** Ends a set opened with openPortForwards (its session ended). */
  async closePortForwards(set: PortForwards): Promise<void> {
    this.portSets.delete(set);
    await set.close();
  }

  private async closePorts(): Promise<void> {
    await Promise.all([...this.portSets].map((set) => set.close()));
  }

  async exec(command: string, opts: ExecOptions, sink: ExecSink): Promise<ExecOutcome> {
    const started = Date.now();
    // A user asked for by name is looked up in the guest, as the image's USER was.
    const user = opts.user ? await resolveUser(guestFileReader(this.running.agent), opts.user) : this.defaultUser;
    const env = withExtraEnv(opts.user ? withHome(this.baseEnv, user.home) : this.defaultEnv, opts.env);
    const status = await this.running.agent.exec(
      {
        command,
        cwd: opts.workingDir || this.defaultCwd,
        user: user.id,
        // A terminal's programs need to know what it is; Docker's `-t` says xterm too.
        env: opts.input?.tty && !env.some((e) => e.startsWith("TERM=")) ? [...env, "TERM=xterm"] : env,
      },
      sink,
      opts.cancel,
      opts.input,
    );
    const signal = status.signal > 0 ? status.signal : undefined;
    return { exitCode: signal ? 128 + signal : status.code, signal, outOfMemory: status.outOfMemory, durationMs: Date.now() - started };
  }

  async writeFile(path: string, content: Buffer, mode: number): Promise<void> {
    await this.running.agent.writeFile(guestPath(path), mode & 0o7777, content);
  }

  async readFile(path: string): Promise<Buffer> {
    return this.running.agent.readFile(guestPath(path), MAX_READ_BYTES);
  }

  /** A streamed write into a temporary file, renamed over `path` on commit (see file-streams.ts). */
  openWriteStream(path: string, mode: number): Promise<AgentWriteStream> {
    return AgentWriteStream.open(this.running.agent, guestPath(path), mode & 0o7777);
  }

  openReadStream(path: string): Promise<AgentReadStream> {
    return AgentReadStream.open(this.running.agent, guestPath(path));
  }

  async listFiles(path: string): Promise<WireFileInfo[]> {
    const entries = await this.running.agent.list(guestPath(path));
    return entries
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((e) => toWireFileInfo(e.name, e));
  }

  /** Removes a file, a symlink or an empty directory; with `recursive`, a whole tree. */
  async removeFile(path: string, recursive: boolean): Promise<void> {
    const p = guestPath(path);
    if (p === "/") throw new PathError("cannot remove /");
    await removePath(this.running.agent, p, recursive);
  }

  async makeDir(path: string, mode: number, parents: boolean): Promise<void> {
    await makeDir(this.running.agent, guestPath(path), mode & 0o7777, parents);
  }

  async renameFile(oldPath: string, newPath: string): Promise<void> {
    const from = guestPath(oldPath);
    if (from === "/") throw new PathError("cannot rename /");
    await renamePath(this.running.agent, from, guestPath(newPath));
  }

  /** The path itself (a symlink as the link), in list_files' form; its name is the last component ("/" for the root). */
  async statFile(path: string): Promise<WireFileInfo> {
    const p = guestPath(path);
    return toWireFileInfo(p === "/" ? "/" : posix.basename(p), await statPath(this.running.agent, p));
  }

  private markClosed!: () => void;
  /** Settles once close() has finished (however it was called: client, deadline, engine stop). */
  readonly whenClosed = new Promise<void>((resolve) => (this.markClosed = resolve));

  /** Stops the sandbox (graceful within `graceMs`, then forced) and marks it stopped. Idempotent. */
  close(graceMs = 2000): Promise<void> {
    this.closing ??= (async () => {
      clearTimeout(this.deadline);
      try {
        await this.closePorts();
        await this.running.stop(graceMs);
      } finally {
        await this.seal?.close();
        await this.recordWrites; // one in flight ends before the record may be removed
        await markStopped(this.id);
        await removeSnapshotDisk(paths.vm(this.id));
        // Once stopped, its disks are free: the guest synced them as it went (its agent syncs before exiting).
        await unlockDisks(this.id, this.config.extraDisks.map((d) => d.hostPath));
      }
    })().finally(() => this.markClosed());
    return this.closing;
  }
}

/** File RPC paths are guest paths: absolute, and normalised so the agent sees what we check. */
function guestPath(p: string): string {
  if (!p.startsWith("/")) throw new PathError(`path must be absolute: ${JSON.stringify(p)}`);
  if (p.includes("\0")) throw new PathError("path must not contain NUL bytes");
  return posix.normalize(p);
}

/** allow_list_add/delete on a sandbox without the seal: nothing filters its (absent) network. */
export class AllowListUnavailableError extends EngineError {
  readonly kind: ErrorKind = "unsupported";
  override readonly rpcCode = ErrorCode.VM_FAILED;
}

/**
 * The guest's /etc/hostname and /etc/hosts as upstream writes them: its hostname on the localhost
 * lines (so it resolves), then add_hosts' `<ip> <host>` lines. Written into the guest's root (the
 * image's files are not changed), so the guest's root may change them later.
 */
async function writeHostFiles(agent: RunningSandbox["agent"], hostname: string, addHosts: ReadonlyArray<{ host: string; ip: string }>): Promise<void> {
  const hosts = [
    `127.0.0.1\tlocalhost localhost.localdomain ${hostname}`,
    `::1\tlocalhost localhost.localdomain ip6-localhost ip6-loopback ${hostname}`,
    ...addHosts.map((m) => `${m.ip}\t${m.host}`),
  ];
  try {
    await Promise.all([
      agent.writeFile("/etc/hostname", 0o644, Buffer.from(`${hostname}\n`)),
      agent.writeFile("/etc/hosts", 0o644, Buffer.from(`${hosts.join("\n")}\n`)),
    ]);
  } catch (err) {
    throw new Error(`could not write the guest's /etc/hostname and /etc/hosts: ${(err as Error).message}`, { cause: err });
  }
}

/** A bad path in a file call: an invalid argument, reported as a file error as the protocol has it. */
export class PathError extends EngineError {
  readonly kind: ErrorKind = "invalid_argument";
  override readonly rpcCode = ErrorCode.FILE_FAILED;
}

const DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Reads the guest's account files from inside the sandbox, never through the host's view of the image. */
function guestFileReader(agent: RunningSandbox["agent"]): GuestFileReader {
  return (path) => agent.readFile(path, MAX_ACCOUNT_FILE);
}

/**
 * Network interception (the seal) is on when the merged config has allowed hosts or secrets
 * (spec 4.2), or asks for it (`intercept`, or interception rules: spec 5.2). Without allowed
 * hosts it denies everything until hosts are allowed.
 */
export function interceptionOn(config: SandboxConfig, secrets: SecretRule[]): boolean {
  return config.network.allowedHosts.length > 0 || secrets.length > 0 || Object.keys(config.network.secrets).length > 0 || config.network.intercept;
}

export interface SandboxNetworkOptions {
  /** Secrets with their real values; these stay in engine memory. */
  secrets?: SecretRule[] | undefined;
  onEvent?: NetworkEventSink | undefined;
  /** File events of intercepted mounts (spec 5.8). */
  onFileEvent?: ((e: FileEvent) => void | Promise<void>) | undefined;
  log?: ((line: string) => void) | undefined;
  /** Told the id just before its record is written, so `matchlock kill` can find a create in progress. */
  onRecord?: ((id: string) => void) | undefined;
  /** Booted ahead as a resident engine's warm spare: its record is marked so, and its deadline waits for its client. */
  spare?: boolean | undefined;
}

/** Secret rules from the create params: placeholders as the spec says (4.3), values kept. */
export function secretRules(
  secrets: Record<string, { value: string; hosts?: string[] | null | undefined; placeholder?: string | undefined; allow_cleartext?: boolean | undefined }>,
): SecretRule[] {
  const placeholders = secretPlaceholders(secrets);
  return Object.entries(secrets).map(([name, s]) => ({
    name, placeholder: placeholders[name]!, value: s.value, hosts: [...(s.hosts ?? [])], allowCleartext: s.allow_cleartext === true,
  }));
}

/** image env < create `env` < network env and secret placeholders; later entries win. */
function composeEnv(imageEnv: string[], extra: Record<string, string>, secrets: Record<string, string>): string[] {
  return layerEnv([DEFAULT_PATH, ...imageEnv], extra, secrets);
}

/** `KEY=VALUE` entries with each layer's variables set over them, in order (later wins). */
function layerEnv(entries: readonly string[], ...layers: Readonly<Record<string, string>>[]): string[] {
  const env = new Map<string, string>();
  const put = (entry: string) => {
    const eq = entry.indexOf("=");
    if (eq > 0) env.set(entry.slice(0, eq), entry);
  };
  entries.forEach(put);
  for (const layer of layers) for (const [k, v] of Object.entries(layer)) put(`${k}=${v}`);
  return [...env.values()];
}

/** One command's own variables over the sandbox's; the shared array itself when there are none. */
function withExtraEnv(env: readonly string[], extra: Readonly<Record<string, string>> | undefined): readonly string[] {
  return extra && Object.keys(extra).length > 0 ? layerEnv(env, extra) : env;
}

/** The env with the user's home as HOME, unless the image or the create request set HOME (as Docker does). */
function withHome(env: readonly string[], home: string): readonly string[] {
  return Object.freeze(env.some((e) => e.startsWith("HOME=")) ? env : [...env, `HOME=${home}`]);
}

/** A fresh `SANDBOX_SECRET_<32 hex>` for each secret without an explicit placeholder. */
export function secretPlaceholders(secrets: Record<string, { placeholder?: string | undefined }>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(secrets).map(([name, s]) => [name, s.placeholder || `SANDBOX_SECRET_${randomBytes(16).toString("hex")}`]),
  );
}
