// Fluent builder for CreateOptions, mirroring the seed Python SDK's Sandbox. Each setter
// validates its input at once, so a mistake is reported where it was made.
import { MatchlockError } from "./errors.js";
import { checkNetworkInterception } from "./network-hooks.js";
import { checkVfsInterception } from "./vfs-hooks.js";
import type { BackendName, CreateOptions, ImageConfig, MountConfig, NetworkInterceptionConfig, SecretOptions, VFSInterceptionConfig } from "./types.js";
import {
  checkBackend,
  checkDnsServer,
  checkEnvMap,
  checkImageConfig,
  checkGuestPath,
  checkHostMapping,
  checkHostname,
  checkHostPattern,
  checkNetworkMtu,
  checkImage,
  checkMount,
  checkTimeoutSeconds,
  checkCpus,
  checkPositiveInt,
  checkForwardAddresses,
  checkPortForward,
  checkExtraDisk,
  checkSecret,
  secretOptions,
} from "./validate.js";

/** The same as `new Sandbox(image)`. */
export function createSandbox(image: string): Sandbox {
  return new Sandbox(image);
}

export class Sandbox {
  private readonly opts: CreateOptions;

  constructor(image: string) {
    this.opts = { image: checkImage(image) };
  }

  /**
   * CPUs (engine default 1). A fraction (0.5, 1.5) is a CPU quota: the guest sees the next whole
   * number of CPUs and gets `cpus` CPUs' worth of time.
   */
  withCPUs(cpus: number): this {
    this.opts.cpus = checkCpus(cpus);
    return this;
  }

  /** Memory in MiB (engine default 512). */
  withMemory(memoryMb: number): this {
    this.opts.memoryMb = checkPositiveInt("memory (MB)", memoryMb);
    return this;
  }

  /** Root disk size in MiB (engine default 5120). */
  withDiskSize(diskSizeMb: number): this {
    this.opts.diskSizeMb = checkPositiveInt("disk size (MB)", diskSizeMb);
    return this;
  }

  /** Sandbox lifetime in seconds: the engine stops the sandbox when it passes; 0 = no limit. Upstream's engine stores it without enforcing it. */
  withTimeout(seconds: number): this {
    this.opts.timeoutSeconds = checkTimeoutSeconds("timeout (seconds)", seconds);
    return this;
  }

  /**
   * Isolation engine for this sandbox: "microvm" (QEMU), "gvisor" or "auto". Default: the
   * engine's own choice ($MATCHLOCK_BACKEND, else auto).
   */
  withBackend(backend: BackendName): this {
    this.opts.backend = checkBackend(backend);
    return this;
  }

  /**
   * Skips the hardening every command otherwise gets (Docker's default capability set,
   * no_new_privs, a seccomp filter): commands run with every capability the engine allows.
   */
  withPrivileged(privileged = true): this {
    if (typeof privileged !== "boolean") throw new MatchlockError(`privileged must be true or false, not ${JSON.stringify(privileged)}`);
    this.opts.privileged = privileged;
    return this;
  }

  /** Guest directory where the VFS is mounted (engine default /workspace). */
  withWorkspace(guestPath: string): this {
    this.opts.workspace = checkGuestPath("workspace", guestPath);
    return this;
  }

  /** Adds host patterns (wildcards allowed, e.g. `*.pythonhosted.org`) to the network allow-list. */
  allowHost(...hosts: string[]): this {
    const checked = hosts.map(checkHostPattern);
    this.opts.allowedHosts = [...(this.opts.allowedHosts ?? []), ...checked];
    return this;
  }

  /** Blocks guest access to private IP ranges (10/8, 172.16/12, 192.168/16, ...). */
  blockPrivateIPs(block = true): this {
    this.opts.blockPrivateIPs = block;
    return this;
  }

  /** The same as blockPrivateIPs(on). */
  withBlockPrivateIPs(on: boolean): this {
    return this.blockPrivateIPs(on);
  }

  /** Lets the guest reach private ranges (only of allowed hosts: the allow-list still applies). */
  allowPrivateIPs(): this {
    return this.blockPrivateIPs(false);
  }

  /** Forgets blockPrivateIPs/allowPrivateIPs: the default (blocked) applies. */
  unsetBlockPrivateIPs(): this {
    delete this.opts.blockPrivateIPs;
    return this;
  }

  /**
   * Injects a secret: the guest sees a placeholder in env var `name`, and the proxy swaps in
   * `value` only on requests to `hosts` (none = any host), and only over TLS unless
   * `{ allowCleartext: true }` (the options form: `addSecret(name, value, { hosts, allowCleartext })`).
   */
  addSecret(name: string, value: string, ...hosts: string[]): this;
  addSecret(name: string, value: string, options: SecretOptions): this;
  addSecret(name: string, value: string, ...rest: string[] | [SecretOptions]): this {
    const secret = checkSecret({ name, value, ...secretOptions(name, rest) });
    const secrets = this.opts.secrets ?? [];
    // The wire form is a map keyed by name, so a second secret would silently replace the first.
    if (secrets.some((s) => s.name === secret.name)) {
      throw new MatchlockError(`secret ${secret.name} is already added`);
    }
    this.opts.secrets = [...secrets, secret];
    return this;
  }

  /**
   * The resolvers the engine asks for allowed names (default: the host's). The guest's own
   * resolver is always the engine, which answers only allowed names.
   */
  withDNSServers(...servers: string[]): this {
    this.opts.dnsServers = servers.map(checkDnsServer);
    return this;
  }

  /**
   * Turns network interception on, with these rules when given (they replace earlier ones):
   * requests and answers to allowed hosts are blocked, changed or handed to `hook` callbacks in
   * this process. Without allowHost/addSecret the sandbox gets a sealed network that denies
   * everything (until hosts are allowed).
   */
  withNetworkInterception(config?: NetworkInterceptionConfig): this {
    const checked = checkNetworkInterception(config);
    this.opts.forceInterception = true;
    if (checked) this.opts.networkInterception = checked;
    else delete this.opts.networkInterception;
    return this;
  }

  /**
   * Puts the engine in the path of every mount of the sandbox: `block` rules fail matching file
   * operations (the sandbox's commands get EPERM, file calls -32002), and each operation there
   * becomes a `file` event (client.onEvent). Replaces earlier rules. See docs/files.md.
   */
  withVFSInterception(config: VFSInterceptionConfig): this {
    this.opts.vfsInterception = checkVfsInterception(config);
    return this;
  }

  /** Makes `host` resolve to `ip` inside the sandbox (a line of its /etc/hosts), with or without a network. */
  addHost(host: string, ip: string): this {
    this.opts.addHosts = [...(this.opts.addHosts ?? []), checkHostMapping(host, ip)];
    return this;
  }

  /** The guest's hostname (default: the VM id). */
  withHostname(name: string): this {
    this.opts.hostname = checkHostname(name);
    return this;
  }

  /** The MTU of the guest's network link (default 1500); the sandbox needs a network (allowHost, addSecret or withNetworkInterception). */
  withNetworkMTU(mtu: number): this {
    this.opts.networkMtu = checkNetworkMtu(mtu);
    return this;
  }

  /**
   * No network device, only loopback. A sandbox without allowHost/addSecret/withNetworkInterception
   * has none anyway; this says so, and makes adding any of them an error.
   */
  withNoNetwork(): this {
    this.opts.noNetwork = true;
    return this;
  }

  /** Adds (or replaces) a VFS mount at `guestPath`. */
  mount(guestPath: string, config: MountConfig): this {
    const clean = checkGuestPath("mount guest path", guestPath);
    this.opts.mounts = { ...this.opts.mounts, [clean]: checkMount(clean, config) };
    return this;
  }

  /** Host directory, read-write: guest writes go straight to the host. */
  mountHostDir(guestPath: string, hostPath: string): this {
    return this.mount(guestPath, { type: "real_fs", hostPath });
  }

  mountHostDirReadonly(guestPath: string, hostPath: string): this {
    return this.mount(guestPath, { type: "real_fs", hostPath, readonly: true });
  }

  /** In-memory filesystem, discarded at close. */
  mountMemory(guestPath: string): this {
    return this.mount(guestPath, { type: "memory" });
  }

  /** Copy-on-write view of a host directory; the host is never modified. */
  mountOverlay(guestPath: string, hostPath: string): this {
    return this.mount(guestPath, { type: "overlay", hostPath });
  }

  /**
   * Attaches an ext4 disk image (a named volume's path from Client.volumeCreate, or any ext4
   * image file) and mounts it at `guestMount`; `{ readonly: true }` mounts it read-only. A disk
   * attached read-write belongs to one running sandbox; read-only, several may share it.
   */
  withDisk(hostPath: string, guestMount: string, options: { readonly?: boolean } = {}): this {
    this.opts.extraDisks = [...(this.opts.extraDisks ?? []), checkExtraDisk(hostPath, guestMount, options.readonly)];
    return this;
  }

  /** Sets one variable of every command's environment. */
  withEnv(name: string, value: string): this {
    return this.withEnvMap({ [name]: value });
  }

  /** Sets several variables of every command's environment (merged with those set before). */
  withEnvMap(env: Record<string, string>): this {
    this.opts.env = { ...this.opts.env, ...checkEnvMap("env", env) };
    return this;
  }

  /** The default user of every command: "uid", "uid:gid" or a name from the guest's /etc/passwd. */
  withUser(user: string): this {
    return this.withImageConfig({ user });
  }

  /** Replaces the image's ENTRYPOINT (what `launch` starts, followed by CMD). */
  withEntrypoint(...argv: string[]): this {
    const entrypoint = [...argv];
    this.opts.imageConfig = { ...this.opts.imageConfig, ...checkImageConfig({ entrypoint }) };
    return this;
  }

  /**
   * Replaces parts of the image's config: each non-empty field given replaces the one set
   * before (env wholesale); null or undefined changes nothing.
   */
  withImageConfig(config: ImageConfig | null | undefined): this {
    if (config === null || config === undefined) return this;
    const checked = checkImageConfig(config);
    const nonEmpty = Object.fromEntries(Object.entries(checked).filter(([, v]) => (Array.isArray(v) ? v.length > 0 : typeof v === "object" ? Object.keys(v).length > 0 : v !== "")));
    this.opts.imageConfig = { ...this.opts.imageConfig, ...nonEmpty };
    return this;
  }

  /**
   * Forwards host port `localPort` to the guest's 127.0.0.1:`remotePort`, bound right after the
   * create: if it cannot be bound, the launch fails and the sandbox is removed.
   */
  withPortForward(localPort: number, remotePort: number): this {
    this.opts.portForwards = [...(this.opts.portForwards ?? []), checkPortForward(localPort, remotePort)];
    return this;
  }

  /** Host addresses the forwards listen on (default 127.0.0.1 only; "0.0.0.0" is every interface). */
  withPortForwardAddresses(...addresses: string[]): this {
    this.opts.portForwardAddresses = [...(this.opts.portForwardAddresses ?? []), ...checkForwardAddresses(addresses)];
    return this;
  }

  /** A copy of the options built so far; changing it does not affect the builder. */
  options(): CreateOptions {
    const { networkInterception, vfsInterception, ...rest } = this.opts;
    const copy: CreateOptions = structuredClone(rest);
    if (networkInterception) copy.networkInterception = { ...(networkInterception.rules ? { rules: networkInterception.rules.map(copyRule) } : {}) };
    if (vfsInterception) copy.vfsInterception = { ...vfsInterception, ...(vfsInterception.rules ? { rules: vfsInterception.rules.map(copyRule) } : {}) };
    return copy;
  }
}

/** A rule's data copied, its hooks (functions, which structuredClone refuses) shared. */
function copyRule<R extends object>(rule: R): R {
  const hooks = Object.entries(rule).filter(([, v]) => typeof v === "function");
  const data = Object.fromEntries(Object.entries(rule).filter(([, v]) => typeof v !== "function"));
  return { ...structuredClone(data), ...Object.fromEntries(hooks) } as R;
}

