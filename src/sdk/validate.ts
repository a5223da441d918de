// Input checks shared by the Sandbox builder and Client.create(). They fail fast, locally,
// with a message naming the bad value, instead of letting the engine reject (or silently
// misread) the create request minutes into an image pull.
import { checkVfsInterception } from "./vfs-hooks.js";
import { MAX_TIMEOUT_SECONDS } from "../protocol/rpc.js";
import { isIP } from "node:net";
import path from "node:path";
import { MatchlockError } from "./errors.js";
import { checkNetworkInterception } from "./network-hooks.js";
import type { BackendName, CreateOptions, ExtraDisk, HostIPMapping, ImageConfig, MountConfig, MountType, PortForward, Secret, SecretOptions } from "./types.js";
import { addHostProblem, hostnameProblem, mtuProblem } from "../protocol/network-fields.js";

const MOUNT_TYPES: readonly MountType[] = ["memory", "real_fs", "host_fs", "overlay"];
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function checkImage(image: unknown): string {
  if (typeof image !== "string" || image.trim() === "") {
    throw invalid("image is required (e.g., alpine:latest)");
  }
  return image;
}

/** cpus, memory and disk: the wire fields are Go ints where 0 means "default". */
export function checkPositiveInt(what: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) {
    throw invalid(`${what} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

/** cpus: whole or fractional CPUs (a quota), at least a hundredth, as Docker's --cpus. */
export function checkCpus(value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0.01) {
    throw invalid(`cpus must be a number of CPUs, at least 0.01 (fractions are a CPU quota), got ${String(value)}`);
  }
  return value;
}

export function checkNonNegativeInt(what: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw invalid(`${what} must be a non-negative integer, got ${String(value)}`);
  }
  return value;
}

export function checkTimeoutSeconds(what: string, value: unknown): number {
  const n = checkNonNegativeInt(what, value);
  if (n > MAX_TIMEOUT_SECONDS) throw invalid(`${what} must be at most ${MAX_TIMEOUT_SECONDS} (7 days), got ${n}`);
  return n;
}

export function checkHostPattern(host: unknown): string {
  if (typeof host !== "string" || host === "" || /\s/.test(host)) {
    throw invalid(`invalid host pattern ${JSON.stringify(host)}: must be non-empty without whitespace`);
  }
  return host;
}

export function checkDnsServer(server: unknown): string {
  if (typeof server !== "string" || isIP(server) === 0) {
    throw invalid(`invalid DNS server ${JSON.stringify(server)}: must be an IP address`);
  }
  return server;
}

/** Returns the path cleaned the way the engine cleans it, so map keys do not collide later. */
export function checkGuestPath(what: string, p: unknown): string {
  if (typeof p !== "string" || !p.startsWith("/") || p.includes("\0")) {
    throw invalid(`${what} must be an absolute guest path, got ${JSON.stringify(p)}`);
  }
  const clean = path.posix.normalize(p);
  return clean.length > 1 && clean.endsWith("/") ? clean.slice(0, -1) : clean;
}

/** Relative host paths are resolved here: the engine inherits our cwd, so this is what it would do. */
function checkHostPath(guestPath: string, p: unknown): string {
  if (typeof p !== "string" || p === "" || p.includes("\0")) {
    throw invalid(`mount ${guestPath}: hostPath is required for this mount type`);
  }
  return path.resolve(p);
}

export function checkMount(guestPath: string, config: MountConfig): MountConfig {
  if (config === null || typeof config !== "object" || !MOUNT_TYPES.includes(config.type)) {
    throw invalid(
      `mount ${guestPath}: type must be one of ${MOUNT_TYPES.join(", ")}, got ${JSON.stringify(config?.type)}`,
    );
  }
  const out: MountConfig = { type: config.type };
  if (config.type === "memory") {
    if (config.hostPath) throw invalid(`mount ${guestPath}: memory mounts take no hostPath`);
  } else {
    out.hostPath = checkHostPath(guestPath, config.hostPath);
  }
  if (config.readonly) out.readonly = true;
  return out;
}

const SECRET_FIELDS = new Set(["name", "value", "hosts", "allowCleartext"]);
const SECRET_OPTIONS = new Set(["hosts", "allowCleartext"]);

/** addSecret's arguments after the value: host patterns, or one options object. */
export function secretOptions(name: string, rest: unknown[]): Omit<Secret, "name" | "value"> {
  const [first] = rest;
  if (rest.length !== 1 || first === null || typeof first !== "object" || Array.isArray(first)) return { hosts: rest as string[] };
  const unknown = Object.keys(first).filter((k) => !SECRET_OPTIONS.has(k));
  if (unknown.length) throw invalid(`secret ${name}: unknown option ${unknown.join(", ")} (known: ${[...SECRET_OPTIONS].join(", ")})`);
  const opts = first as SecretOptions;
  return { hosts: opts.hosts ?? [], ...(opts.allowCleartext !== undefined ? { allowCleartext: opts.allowCleartext } : {}) };
}

export function checkEnvName(what: string, name: unknown): string {
  if (typeof name !== "string" || !ENV_NAME.test(name)) {
    throw invalid(`${what}: invalid environment variable name ${JSON.stringify(name)}`);
  }
  return name;
}

export function checkEnvMap(what: string, env: unknown): Record<string, string> {
  if (env === null || typeof env !== "object" || Array.isArray(env)) throw invalid(`${what} must be an object of strings`);
  return Object.fromEntries(Object.entries(env).map(([k, v]) => {
    if (typeof v !== "string" || v.includes("\0")) throw invalid(`${what}.${k} must be a string without NUL`);
    return [checkEnvName(what, k), v];
  }));
}

function checkArgv(what: string, argv: unknown): string[] {
  if (!Array.isArray(argv) || argv.some((a) => typeof a !== "string")) throw invalid(`${what} must be an array of strings`);
  return [...argv];
}

const IMAGE_CONFIG_KEYS = new Set(["user", "workingDir", "entrypoint", "cmd", "env"]);

export function checkImageConfig(c: ImageConfig): ImageConfig {
  if (typeof c !== "object" || Array.isArray(c)) throw invalid("imageConfig must be an object");
  const unknown = Object.keys(c).filter((k) => !IMAGE_CONFIG_KEYS.has(k) && (c as Record<string, unknown>)[k] !== undefined);
  if (unknown.length > 0) throw invalid(`unknown imageConfig field ${unknown.join(", ")}`);
  const out: ImageConfig = {};
  if (c.user !== undefined) out.user = checkString("imageConfig.user", c.user);
  if (c.workingDir !== undefined) {
    out.workingDir = c.workingDir === "" ? "" : checkGuestPath("imageConfig.workingDir", c.workingDir);
  }
  if (c.entrypoint !== undefined) out.entrypoint = checkArgv("imageConfig.entrypoint", c.entrypoint);
  if (c.cmd !== undefined) out.cmd = checkArgv("imageConfig.cmd", c.cmd);
  if (c.env !== undefined) out.env = checkEnvMap("imageConfig.env", c.env);
  return out;
}

function checkString(what: string, v: unknown): string {
  if (typeof v !== "string") throw invalid(`${what} must be a string`);
  return v;
}

export function checkSecret(secret: Secret): Secret {
  if (typeof secret?.name !== "string" || !ENV_NAME.test(secret.name)) {
    throw invalid(
      `invalid secret name ${JSON.stringify(secret?.name)}: must be a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)`,
    );
  }
  // An empty value is nearly always an unset env var (process.env.X ?? ""), not a real secret.
  if (typeof secret.value !== "string" || secret.value === "") {
    throw invalid(`secret ${secret.name} has an empty or non-string value`);
  }
  if (!Array.isArray(secret.hosts)) throw invalid(`secret ${secret.name}: hosts must be an array`);
  const unknown = Object.keys(secret).filter((k) => !SECRET_FIELDS.has(k));
  if (unknown.length) throw invalid(`secret ${secret.name}: unknown field ${unknown.join(", ")} (known: ${[...SECRET_FIELDS].join(", ")})`);
  const out: Secret = { name: secret.name, value: secret.value, hosts: secret.hosts.map(checkHostPattern) };
  if (secret.allowCleartext !== undefined) {
    if (typeof secret.allowCleartext !== "boolean") throw invalid(`secret ${secret.name}: allowCleartext must be a boolean`);
    if (secret.allowCleartext) out.allowCleartext = true;
  }
  return out;
}

/** The shape of a backend name; which names exist is the engine's to say. */
export function checkBackend(backend: BackendName): BackendName {
  if (typeof backend !== "string" || !/^[a-z][a-z0-9_-]*$/.test(backend)) {
    throw invalid(`backend must be a backend name such as "microvm", "gvisor" or "auto", not ${JSON.stringify(backend)}`);
  }
  return backend;
}

const CREATE_OPTIONS: ReadonlySet<string> = new Set<keyof CreateOptions>([
  "image", "cpus", "memoryMb", "diskSizeMb", "timeoutSeconds", "allowedHosts", "blockPrivateIPs",
  "mounts", "secrets", "workspace", "dnsServers", "backend", "launchEntrypoint", "env", "imageConfig", "privileged",
  "forceInterception", "networkInterception", "vfsInterception",
  "portForwards", "portForwardAddresses", "addHosts", "hostname", "networkMtu", "noNetwork", "extraDisks",
]);

/** Validates a whole CreateOptions (e.g. one written by hand) and returns a normalised copy. */
export function checkCreateOptions(opts: CreateOptions): CreateOptions {
  if (opts === null || typeof opts !== "object") throw invalid("create options must be an object");
  const unknown = Object.keys(opts).filter((k) => !CREATE_OPTIONS.has(k) && (opts as unknown as Record<string, unknown>)[k] !== undefined);
  if (unknown.length > 0) throw invalid(`unknown create option${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")}: not supported by this SDK`);
  const out: CreateOptions = { image: checkImage(opts.image) };
  // 0 means "engine default" on the wire, so it is accepted here although the builder refuses it.
  if (opts.cpus !== undefined && opts.cpus !== 0) out.cpus = checkCpus(opts.cpus);
  if (opts.memoryMb !== undefined && opts.memoryMb !== 0) out.memoryMb = checkPositiveInt("memoryMb", opts.memoryMb);
  if (opts.diskSizeMb !== undefined && opts.diskSizeMb !== 0) {
    out.diskSizeMb = checkPositiveInt("diskSizeMb", opts.diskSizeMb);
  }
  if (opts.timeoutSeconds !== undefined) out.timeoutSeconds = checkTimeoutSeconds("timeoutSeconds", opts.timeoutSeconds);
  if (opts.backend !== undefined) out.backend = checkBackend(opts.backend);
  if (opts.privileged !== undefined) {
    if (typeof opts.privileged !== "boolean") throw invalid(`privileged must be true or false, not ${JSON.stringify(opts.privileged)}`);
    out.privileged = opts.privileged;
  }
  if (opts.allowedHosts !== undefined) out.allowedHosts = opts.allowedHosts.map(checkHostPattern);
  if (opts.blockPrivateIPs !== undefined) out.blockPrivateIPs = Boolean(opts.blockPrivateIPs);
  if (opts.mounts !== undefined) {
    out.mounts = {};
    for (const [guest, config] of Object.entries(opts.mounts)) {
      const clean = checkGuestPath("mount guest path", guest);
      out.mounts[clean] = checkMount(clean, config);
    }
  }
  if (opts.secrets !== undefined) {
    const seen = new Set<string>();
    out.secrets = opts.secrets.map((s) => {
      const secret = checkSecret(s);
      if (seen.has(secret.name)) throw invalid(`secret ${secret.name} is defined twice`);
      seen.add(secret.name);
      return secret;
    });
  }
  if (opts.workspace !== undefined && opts.workspace !== "") {
    out.workspace = checkGuestPath("workspace", opts.workspace);
  }
  if (opts.dnsServers !== undefined) out.dnsServers = opts.dnsServers.map(checkDnsServer);
  if (opts.launchEntrypoint) out.launchEntrypoint = true;
  if (opts.env !== undefined) out.env = checkEnvMap("env", opts.env);
  if (opts.imageConfig !== undefined && opts.imageConfig !== null) out.imageConfig = checkImageConfig(opts.imageConfig);
  if (opts.forceInterception) out.forceInterception = true;
  const interception = checkNetworkInterception(opts.networkInterception);
  if (interception) out.networkInterception = interception;
  if (opts.vfsInterception !== undefined) out.vfsInterception = checkVfsInterception(opts.vfsInterception);
  if (opts.portForwards !== undefined) {
    if (!Array.isArray(opts.portForwards)) throw invalid("portForwards must be an array of { localPort, remotePort }");
    out.portForwards = opts.portForwards.map((f) => checkPortForward(f?.localPort, f?.remotePort));
  }
  if (opts.portForwardAddresses !== undefined) {
    out.portForwardAddresses = checkForwardAddresses(opts.portForwardAddresses);
    if (out.portForwardAddresses.length > 0 && !out.portForwards?.length) throw invalid("portForwardAddresses has no effect without portForwards");
  }
  if (opts.addHosts !== undefined) {
    if (!Array.isArray(opts.addHosts)) throw invalid("addHosts must be an array of { host, ip }");
    out.addHosts = opts.addHosts.map((m) => checkHostMapping(m?.host, m?.ip));
  }
  if (opts.hostname !== undefined && opts.hostname !== "") out.hostname = checkHostname(opts.hostname);
  if (opts.networkMtu !== undefined && opts.networkMtu !== 0) out.networkMtu = checkNetworkMtu(opts.networkMtu);
  if (opts.noNetwork !== undefined) {
    if (typeof opts.noNetwork !== "boolean") throw invalid(`noNetwork must be true or false, not ${JSON.stringify(opts.noNetwork)}`);
    if (opts.noNetwork) out.noNetwork = true;
  }
  if (opts.extraDisks !== undefined) {
    if (!Array.isArray(opts.extraDisks)) throw invalid("extraDisks must be an array of { hostPath, guestMount, readonly? }");
    out.extraDisks = opts.extraDisks.map((d) => checkExtraDisk(d?.hostPath, d?.guestMount, d?.readonly));
  }
  checkNoNetwork(out);
  return out;
}

/** An extra disk: a host image path (resolved here, as mounts' are) and an absolute guest path. */
export function checkExtraDisk(hostPath: unknown, guestMount: unknown, readonly: unknown): ExtraDisk {
  if (typeof hostPath !== "string" || hostPath === "" || hostPath.includes("\0")) throw invalid(`extra disk hostPath must be a path, got ${JSON.stringify(hostPath)}`);
  if (readonly !== undefined && typeof readonly !== "boolean") throw invalid(`extra disk readonly must be true or false, got ${JSON.stringify(readonly)}`);
  const guest = checkGuestPath("extra disk guestMount", guestMount);
  return { hostPath: path.resolve(hostPath), guestMount: guest, ...(readonly ? { readonly: true } : {}) };
}

/** allowListAdd/Delete's hosts: comma-separated lists allowed, trimmed, de-duplicated; none is an error. */
export function checkAllowListHosts(hosts: unknown[]): string[] {
  const out = new Set<string>();
  for (const h of hosts) {
    if (typeof h !== "string") throw invalid(`allow-list host must be a string, got ${JSON.stringify(h)}`);
    for (const part of h.split(",")) if (part.trim()) out.add(checkHostPattern(part.trim()));
  }
  if (out.size === 0) throw invalid("at least one host is required");
  return [...out];
}

/** One /etc/hosts line, checked as upstream's SDKs check it. */
export function checkHostMapping(host: unknown, ip: unknown): HostIPMapping {
  const problem = addHostProblem(host, ip);
  if (problem) throw invalid(problem);
  return { host: host as string, ip: (ip as string).trim() };
}

export function checkHostname(name: unknown): string {
  const problem = hostnameProblem(name);
  if (problem) throw invalid(problem);
  return name as string;
}

export function checkNetworkMtu(mtu: unknown): number {
  // Upstream's SDK wording for a negative one.
  if (typeof mtu === "number" && mtu < 0) throw invalid("network mtu must be > 0");
  const problem = mtuProblem(mtu);
  if (problem) throw invalid(problem);
  return mtu as number;
}

/** noNetwork with what needs a network is one error naming all of it (as upstream's SDK has it). */
export function checkNoNetwork(opts: CreateOptions): void {
  if (!opts.noNetwork) return;
  const clash = [
    opts.allowedHosts?.length && "allowed hosts",
    opts.secrets?.length && "secrets",
    opts.forceInterception && "network interception",
    opts.networkInterception && "network interception rules",
    opts.networkMtu && "a network mtu",
    opts.dnsServers?.length && "DNS servers",
    opts.blockPrivateIPs === false && "allowPrivateIPs()",
  ].filter(Boolean);
  if (clash.length > 0) throw invalid(`no network cannot be combined with ${clash.join(", ")}`);
}

/** A forward's ports: local 0-65535 (0: any free port), remote 1-65535. */
export function checkPortForward(localPort: unknown, remotePort: unknown): PortForward {
  const ok = (p: unknown, min: number) => typeof p === "number" && Number.isInteger(p) && p >= min && p <= 65535;
  if (!ok(localPort, 0)) throw invalid(`port forward local port must be an integer 0-65535, got ${JSON.stringify(localPort)}`);
  if (!ok(remotePort, 1)) throw invalid(`port forward remote port must be an integer 1-65535, got ${JSON.stringify(remotePort)}`);
  return { localPort: localPort as number, remotePort: remotePort as number };
}

/** Listening addresses: IP literals (a host name could resolve to more than one). */
export function checkForwardAddresses(addresses: unknown): string[] {
  if (!Array.isArray(addresses)) throw invalid("port forward addresses must be an array of IP addresses");
  return addresses.map((a) => {
    const trimmed = typeof a === "string" ? a.trim() : a;
    if (typeof trimmed !== "string" || isIP(trimmed) === 0) throw invalid(`port forward address ${JSON.stringify(a)} is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1)`);
    return trimmed;
  });
}

/** A bad argument, found before anything is sent. */
function invalid(message: string): MatchlockError {
  return new MatchlockError(message, { kind: "invalid_argument" });
}
