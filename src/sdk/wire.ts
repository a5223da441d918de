// Conversions between the SDK's camelCase types and the engine's JSON (spec §2). The create
// params follow what the seed Python SDK sends, field for field, for wire compatibility.
import { ZERO_MOD_TIME, type WireFileInfo, type WireMount } from "../protocol/rpc.js";
import { networkInterceptionWire } from "./network-hooks.js";
import type { WirePortBinding } from "../protocol/port-forward.js";
import { toWireForwards } from "../protocol/port-forward.js";
import { vfsInterceptionWire } from "./vfs-hooks.js";
import type { CreateOptions, ExecResult, ExecStreamResult, FileInfo, MountConfig, PortForward, PortForwardBinding } from "./types.js";

export function toWireMount(m: MountConfig): WireMount {
  const wire: WireMount = { type: m.type };
  if (m.hostPath) wire.host_path = m.hostPath;
  if (m.readonly) wire.readonly = true;
  return wire;
}

/**
 * Params of `create`. As in the seed Python SDK: resources only with non-zero fields; network
 * only when something network-related is set; vfs only when mounts or a workspace are set.
 * Unlike the seed SDK, block_private_ips defaults to true (as later upstream SDKs do), so
 * allowHost() alone does not open private ranges; blockPrivateIPs(false) opens them.
 */
export function toCreateParams(opts: CreateOptions): Record<string, unknown> {
  const params: Record<string, unknown> = { image: opts.image };
  if (opts.backend) params.backend = opts.backend;
  if (opts.privileged) params.privileged = true;

  const resources: Record<string, number | boolean> = {};
  if (opts.cpus) resources.cpus = opts.cpus;
  if (opts.memoryMb) resources.memory_mb = opts.memoryMb;
  if (opts.diskSizeMb) resources.disk_size_mb = opts.diskSizeMb;
  if (opts.timeoutSeconds) {
    // enforce_timeout (an extension): upstream engines store timeout_seconds without enforcing it.
    resources.timeout_seconds = opts.timeoutSeconds;
    resources.enforce_timeout = true;
  }
  if (Object.keys(resources).length > 0) params.resources = resources;
  if (opts.launchEntrypoint) params.launch_entrypoint = true;
  if (opts.env && Object.keys(opts.env).length > 0) params.env = { ...opts.env };
  if (opts.imageConfig) {
    // As upstream's SDK: sent whenever set; user and working_dir only when non-empty.
    const c = opts.imageConfig;
    params.image_config = {
      ...(c.user ? { user: c.user } : {}),
      ...(c.workingDir ? { working_dir: c.workingDir } : {}),
      ...(c.entrypoint ? { entrypoint: [...c.entrypoint] } : {}),
      ...(c.cmd ? { cmd: [...c.cmd] } : {}),
      ...(c.env ? { env: { ...c.env } } : {}),
    };
  }

  const allowedHosts = opts.allowedHosts ?? [];
  const secrets = opts.secrets ?? [];
  const dnsServers = opts.dnsServers ?? [];
  const intercept = opts.forceInterception === true || opts.networkInterception !== undefined;
  const addHosts = (opts.addHosts ?? []).map((m) => ({ host: m.host, ip: m.ip }));
  // As upstream's SDK: without a network only the guest's own names go.
  if (opts.noNetwork) {
    params.network = {
      no_network: true,
      ...(addHosts.length > 0 ? { add_hosts: addHosts } : {}),
      ...(dnsServers.length > 0 ? { dns_servers: [...dnsServers] } : {}),
      ...(opts.hostname ? { hostname: opts.hostname } : {}),
    };
  } else if (allowedHosts.length > 0 || opts.blockPrivateIPs !== undefined || secrets.length > 0 || dnsServers.length > 0 || intercept ||
    addHosts.length > 0 || opts.hostname || (opts.networkMtu ?? 0) > 0) {
    const network: Record<string, unknown> = {
      allowed_hosts: [...allowedHosts],
      block_private_ips: opts.blockPrivateIPs ?? true,
    };
    if (addHosts.length > 0) network.add_hosts = addHosts;
    if (opts.hostname) network.hostname = opts.hostname;
    if ((opts.networkMtu ?? 0) > 0) network.mtu = opts.networkMtu;
    if (secrets.length > 0) {
      network.secrets = Object.fromEntries(
        secrets.map((s) => [s.name, { value: s.value, hosts: [...s.hosts], ...(s.allowCleartext ? { allow_cleartext: true } : {}) }]),
      );
    }
    if (dnsServers.length > 0) network.dns_servers = [...dnsServers];
    if (intercept) network.intercept = true;
    // callback_socket is added by the client, which serves the hooks.
    if (opts.networkInterception !== undefined) network.interception = networkInterceptionWire(opts.networkInterception).wire;
    params.network = network;
  }

  const mounts = Object.entries(opts.mounts ?? {});
  const interception = opts.vfsInterception && vfsInterceptionWire(opts.vfsInterception);
  if (mounts.length > 0 || opts.workspace || interception) {
    const vfs: Record<string, unknown> = {};
    if (mounts.length > 0) vfs.mounts = Object.fromEntries(mounts.map(([guest, m]) => [guest, toWireMount(m)]));
    if (opts.workspace) vfs.workspace = opts.workspace;
    if (interception) vfs.interception = interception;
    params.vfs = vfs;
  }
  if (opts.extraDisks?.length) {
    params.extra_disks = opts.extraDisks.map((d) => ({ host_path: d.hostPath, guest_mount: d.guestMount, ...(d.readonly ? { readonly: true } : {}) }));
  }
  return params;
}

/** `port_forward`'s params; no addresses: the engine's default (127.0.0.1). */
export function toPortForwardParams(forwards: readonly PortForward[], addresses: readonly string[] | undefined): Record<string, unknown> {
  return { forwards: toWireForwards(forwards), ...(addresses && addresses.length > 0 ? { addresses: [...addresses] } : {}) };
}

/** Our engine's create extension: the forwards bound as part of the create. */
export function withCreateForwards(params: Record<string, unknown>, opts: CreateOptions): Record<string, unknown> {
  if (!opts.portForwards?.length) return params;
  const extra = toPortForwardParams(opts.portForwards, opts.portForwardAddresses);
  return { ...params, port_forwards: extra.forwards, ...(extra.addresses ? { port_forward_addresses: extra.addresses } : {}) };
}

/** A list of strings from a result (upstream sends null for an empty one). */
export function stringList(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

export function toPortForwardBindings(result: Record<string, unknown>): PortForwardBinding[] {
  const bindings = Array.isArray(result.bindings) ? (result.bindings as Partial<WirePortBinding>[]) : [];
  return bindings.map((b) => ({
    address: typeof b.address === "string" ? b.address : "",
    localPort: num(b.local_port),
    remotePort: num(b.remote_port),
  }));
}

/** Engine output is raw bytes; decode as UTF-8 with U+FFFD for invalid sequences, like the seed SDKs. */
export function decodeBase64Text(value: unknown): string {
  return decodeBase64(value).toString("utf8");
}

export function decodeBase64(value: unknown): Buffer {
  return Buffer.from(typeof value === "string" ? value : "", "base64");
}

function num(value: unknown): number {
  return typeof value === "number" ? value : 0;
}

export function toExecResult(result: Record<string, unknown>): ExecResult {
  return {
    exitCode: num(result.exit_code),
    stdout: decodeBase64Text(result.stdout),
    stderr: decodeBase64Text(result.stderr),
    durationMs: num(result.duration_ms),
    ...signalOf(result),
  };
}

function signalOf(result: Record<string, unknown>): { signal?: number; outOfMemory?: true } {
  return {
    ...(typeof result.signal === "number" && result.signal > 0 ? { signal: result.signal } : {}),
    ...(result.out_of_memory === true ? { outOfMemory: true as const } : {}),
  };
}

export function toExecStreamResult(result: Record<string, unknown>): ExecStreamResult {
  return { exitCode: num(result.exit_code), durationMs: num(result.duration_ms), ...signalOf(result) };
}

export function toFileInfos(result: Record<string, unknown>): FileInfo[] {
  const files = Array.isArray(result.files) ? (result.files as unknown[]) : [];
  return files.map(toFileInfo);
}

/** One `list_files` entry (or `stat_file`'s `file`); lenient, as upstream's SDK is. */
export function toFileInfo(wire: unknown): FileInfo {
  const f = (typeof wire === "object" && wire !== null ? wire : {}) as Partial<WireFileInfo>;
  const modTime = typeof f.mod_time === "string" && f.mod_time !== ZERO_MOD_TIME ? new Date(f.mod_time) : undefined;
  return {
    name: typeof f.name === "string" ? f.name : "",
    size: num(f.size),
    mode: num(f.mode),
    isDir: f.is_dir === true,
    ...(modTime && !Number.isNaN(modTime.getTime()) ? { modTime } : {}),
  };
}
