// The `create` params: validated with zod, then merged over the engine defaults exactly as the
// protocol spec (2.1) says: resources field by field, `network` and `vfs` replaced wholesale.
import { isIP } from "node:net";
import { z } from "zod";
import { MAX_TIMEOUT_SECONDS, type WireMount } from "../../protocol/rpc.js";
import { BACKEND_CHOICES } from "../backends/registry.js";
import { interceptionSchema, ruleTexts, type InterceptionConfig } from "../net/interception/config.js";
import { normalizeHost } from "../net/policy.js";
import { isPrivateAddress } from "../net/private-ranges.js";
import type { ImageConfig } from "../image/types.js";
import { toVfsInterception, vfsInterceptionSchema, type VfsInterception } from "../vfs/interception/config.js";
import { addHostProblem, DEFAULT_MTU, hostnameProblem, mtuProblem } from "../../protocol/network-fields.js";
import { forwardAddressesSchema, forwardSchema, toForwardRequest, type ForwardRequest } from "../ports/port-forward-params.js";

// Every object is strict: a field this engine does not know is refused by name, never dropped.
// Fields of the protocol (spec 2.1, 5.2) that this engine does not implement yet are accepted only
// with the value that asks for nothing (false, empty, absent); anything else is refused by name.

/** A protocol field this engine does not implement: only its do-nothing values pass. */
function notYet(name: string, schema: z.ZodType, isNoop: (v: never) => boolean) {
  return schema.refine((v) => isNoop(v as never), { error: `${name} is not supported by this engine yet` }).optional();
}
const isEmpty = (v: unknown) =>
  v === null || v === undefined || v === false || v === "" || v === 0 ||
  (Array.isArray(v) && v.length === 0) ||
  (typeof v === "object" && !Array.isArray(v) && Object.values(v as object).every(isEmpty));

const mountSchema: z.ZodType<WireMount> = z.lazy(() =>
  z.strictObject({
    type: z.string().default("memory"),
    host_path: z.string().optional(),
    readonly: z.boolean().optional(),
    upper: mountSchema.optional(),
    lower: mountSchema.optional(),
  }),
);

/** Where the engine's own mounts are: a disk over one would hide what the sandbox needs. */
const RESERVED_GUEST_PATHS = ["/proc", "/sys", "/dev", "/tmp", "/.matchlock"];

/** The protocol's pattern (spec 2.1), and a plain path: no "." or ".." steps, no doubled or trailing slash. */
function guestMountProblem(p: string): string | undefined {
  if (!/^\/[A-Za-z0-9/_.-]+$/.test(p)) return "must be absolute and use only letters, digits, '/', '_', '.' and '-'";
  if (p.endsWith("/") || p.split("/").slice(1).some((step) => step === "" || step === "." || step === "..")) return 'must be a plain absolute path (no ".", ".." or empty steps, no trailing slash)';
  const reserved = RESERVED_GUEST_PATHS.find((r) => p === r || p.startsWith(`${r}/`));
  if (reserved) return `is inside ${reserved}, which the sandbox itself needs`;
  return undefined;
}

const extraDiskSchema = z.strictObject({
  host_path: z.string({ error: "invalid extra disk config: host_path is required" })
    .refine((p) => p.startsWith("/"), { error: (i) => `invalid extra disk config: host_path ${JSON.stringify(i.input)} must be an absolute path` }),
  guest_mount: z.string({ error: "invalid extra disk config: guest_mount is required" }).superRefine((p, ctx) => {
    const problem = guestMountProblem(p);
    if (problem) ctx.addIssue({ code: "custom", message: `invalid extra disk config: invalid guest mount path ${JSON.stringify(p)}: ${problem}` });
  }),
  readonly: z.boolean({ error: "invalid extra disk config: readonly must be true or false" }).optional(),
});

const nonNegative = (what: string) =>
  z.number({ error: `${what} must be a number` }).refine((n) => Number.isFinite(n) && n >= 0, `${what} must not be negative`);

/** One `<ip> <host>` line of the guest's /etc/hosts: checked as upstream's SDKs check it. */
const addHostSchema = z.strictObject({
  host: z.string({ error: "invalid add-host mapping: host must be a string" }),
  ip: z.string({ error: "invalid add-host mapping: ip must be a string" }),
}).superRefine((m, ctx) => {
  const problem = addHostProblem(m.host, m.ip);
  if (problem) ctx.addIssue({ code: "custom", path: [], message: problem });
});

const networkSchema = z.strictObject({
  allowed_hosts: z.array(z.string()).nullish(),
  block_private_ips: z.boolean().optional(),
  secrets: z.record(z.string(), z.strictObject({
    value: z.string(),
    hosts: z.array(z.string()).nullish(),
    placeholder: z.string().optional(),
    // A matchlock extension: the value may also be substituted into plain HTTP requests.
    allow_cleartext: z.boolean({ error: "must be a boolean" }).optional(),
  })).nullish(),
  dns_servers: z.array(z.string().refine((s) => isIP(s) !== 0, { error: (i) => `invalid DNS server ${JSON.stringify(i.input)}: must be an IP address` })).nullish(),
  // A sandbox without allowed hosts or secrets has no network device: that is no_network.
  no_network: z.boolean().optional(),
  policy_script: notYet("network.policy_script", z.string(), isEmpty),
  // Seals the network even without allowed hosts or secrets (then everything is denied).
  intercept: z.boolean({ error: "must be a boolean" }).optional(),
  interception: interceptionSchema.nullish(),
  // Lines of the guest's /etc/hosts (spec 5.2), with or without a network.
  add_hosts: z.array(addHostSchema).nullish(),
  // Empty or absent: the VM id.
  hostname: z.string().refine((h) => h === "" || !hostnameProblem(h), { error: (i) => hostnameProblem(i.input)! }).nullish(),
  // 0 or absent: 1500.
  mtu: z.number({ error: "must be a number" }).refine((m) => m === 0 || !mtuProblem(m), { error: (i) => `${mtuProblem(i.input)!} (0: the default ${DEFAULT_MTU})` }).nullish(),
}).superRefine((n, ctx) => {
  const rules = n.interception?.rules ?? [];
  const networked = (n.allowed_hosts?.length ?? 0) > 0 || Object.keys(n.secrets ?? {}).length > 0 || n.intercept === true || !!n.interception;
  // Without allowed hosts or secrets the sandbox has no network: resolvers would do nothing.
  if (!networked && (n.dns_servers?.length ?? 0) > 0) {
    ctx.addIssue({ code: "custom", path: [], message: "network.dns_servers has no effect without network.allowed_hosts, network.secrets or network.intercept (the sandbox then has no network)" });
  }
  // An address the policy would only ever refuse: a clear error now rather than a 403 later.
  if (n.block_private_ips === true) {
    const listed: Array<[path: string[], host: string]> = [
      ...(n.allowed_hosts ?? []).map((h): [string[], string] => [["allowed_hosts"], h]),
      ...Object.entries(n.secrets ?? {}).flatMap(([k, sec]) => (sec.hosts ?? []).map((h): [string[], string] => [["secrets", k, "hosts"], h])),
    ];
    const blocked = listed.find(([, h]) => isPrivateAddress(normalizeHost(h)));
    if (blocked) {
      ctx.addIssue({ code: "custom", path: blocked[0], message: `${blocked[1]} is a private address, which block_private_ips blocks: allow private IPs (block_private_ips false) to reach it` });
    }
  }
  if (!networked && n.mtu && n.mtu !== DEFAULT_MTU) {
    ctx.addIssue({ code: "custom", path: [], message: "network.mtu has no effect without network.allowed_hosts, network.secrets or network.intercept (the sandbox then has no network device)" });
  }
  // A rule is sent on, or shown to the guest: it may carry a secret's placeholder, never its value.
  for (const [i, r] of rules.entries()) {
    const text = ruleTexts(r).join("\n");
    const secret = Object.entries(n.secrets ?? {}).find(([, s]) => s.value && text.includes(s.value))?.[0];
    if (secret) ctx.addIssue({ code: "custom", path: ["interception", "rules", i], message: `holds the real value of secret ${secret}: rules may use its placeholder only (it is substituted after the before rules)` });
  }
  if (!n.no_network) return;
  const clash = [
    (n.allowed_hosts?.length ?? 0) > 0 && "network.allowed_hosts",
    Object.keys(n.secrets ?? {}).length > 0 && "network.secrets",
    n.intercept === true && "network.intercept",
    !!n.interception && "network.interception",
  ].find(Boolean);
  if (clash) ctx.addIssue({ code: "custom", path: [], message: `invalid configuration: network.no_network cannot be combined with ${clash}` });
});

/** The smallest CPU quota: a hundredth of a CPU, as Docker's --cpus (1 ms per 100 ms period). */
export const MIN_CPUS = 0.01;
/** QEMU's vCPU ceiling for the machine type we boot; gVisor is capped by the host's CPUs anyway. */
export const MAX_CPUS = 255;

export const createParamsSchema = z.strictObject({
  image: z.string({ error: "image is required (e.g., alpine:latest)" }).min(1, "image is required (e.g., alpine:latest)"),
  privileged: z.boolean({ error: "privileged must be true or false" }).optional(),
  resources: z.strictObject({
    // Fractions are a CPU quota (the guest sees the next whole number of CPUs); 0 is the default.
    cpus: nonNegative("resources.cpus")
      .refine((v) => v === 0 || v >= MIN_CPUS, `resources.cpus must be 0 (the default) or at least ${MIN_CPUS}`)
      .pipe(z.number().max(MAX_CPUS, `resources.cpus must be at most ${MAX_CPUS}`))
      .optional(),
    memory_mb: nonNegative("resources.memory_mb").pipe(z.number().int("resources.memory_mb must be an integer")).optional(),
    disk_size_mb: nonNegative("resources.disk_size_mb").pipe(z.number().int("resources.disk_size_mb must be an integer")).optional(),
    timeout_seconds: nonNegative("resources.timeout_seconds")
      .pipe(z.number().max(MAX_TIMEOUT_SECONDS, `resources.timeout_seconds must be at most ${MAX_TIMEOUT_SECONDS} (7 days)`))
      .optional(),
    // A matchlock extension: stop the sandbox when timeout_seconds pass. Upstream stores
    // timeout_seconds without enforcing it and its SDKs always send 300, so a plain one is not enforced.
    enforce_timeout: z.boolean().optional(),
  }).nullish().superRefine((r, ctx) => {
    if (r?.enforce_timeout && !(r.timeout_seconds! > 0)) {
      ctx.addIssue({ code: "custom", path: ["enforce_timeout"], message: "resources.enforce_timeout needs a positive resources.timeout_seconds" });
    }
  }),
  network: networkSchema.nullish(),
  vfs: z.strictObject({
    workspace: z.string().optional(),
    mounts: z.record(z.string(), mountSchema).nullish(),
    direct_mounts: notYet("vfs.direct_mounts", z.record(z.string(), z.unknown()).nullable(), isEmpty),
    interception: vfsInterceptionSchema.nullish(),
  }).nullish(),
  env: z.record(z.string(), z.string()).nullish(),
  image_config: z.strictObject({
    user: z.string().nullish(),
    working_dir: z.string().nullish(),
    entrypoint: z.array(z.string()).nullish(),
    cmd: z.array(z.string()).nullish(),
    env: z.record(z.string(), z.string()).nullish(),
  }).nullish(),
  launch_entrypoint: z.boolean().optional(),
  // A matchlock extension: port forwards bound as part of the create (as a port_forward right
  // after it would), so that a bind failure undoes the create and leaves nothing behind.
  port_forwards: z.array(forwardSchema).nullish(),
  port_forward_addresses: forwardAddressesSchema.nullish(),
  extra_disks: z.array(extraDiskSchema).nullish().superRefine((disks, ctx) => {
    const seen = new Set<string>();
    for (const [i, d] of (disks ?? []).entries()) {
      if (seen.has(d.guest_mount)) ctx.addIssue({ code: "custom", path: [i, "guest_mount"], message: `invalid extra disk config: two disks at ${d.guest_mount}` });
      seen.add(d.guest_mount);
    }
  }),
  // A matchlock extension: the isolation engine for this sandbox; absent = $MATCHLOCK_BACKEND.
  backend: z.string().refine((b) => BACKEND_CHOICES.includes(b), {
    error: `backend must be ${BACKEND_CHOICES.slice(0, -1).join(", ")} or ${BACKEND_CHOICES.at(-1)}`,
  }).optional(),
  id: z.undefined({ error: "id is internal-only and cannot be set" }).optional(),
}).superRefine((p, ctx) => {
  if ((p.port_forward_addresses?.length ?? 0) > 0 && (p.port_forwards?.length ?? 0) === 0) {
    ctx.addIssue({ code: "custom", path: [], message: "port_forward_addresses has no effect without port_forwards" });
  }
});

export type CreateParams = z.infer<typeof createParamsSchema>;

export interface SandboxConfig {
  image: string;
  cpus: number;
  memoryMb: number;
  diskSizeMb: number;
  timeoutSeconds: number;
  /** Set only when the request asked for an enforced timeout: then the sandbox is stopped when it passes. */
  deadlineSeconds: number | undefined;
  /** Start the image's ENTRYPOINT + CMD, detached, once the sandbox is up. */
  launchEntrypoint: boolean;
  /** Overrides of the image's OCI config (spec 5.2), merged over it at create. */
  imageConfig: ImageConfigOverride;
  workspace: string;
  mounts: Record<string, WireMount>;
  /** Block rules and file events for every mount (spec 5.8); absent: the mounts are plain. */
  vfsInterception?: VfsInterception;
  /** ext4 images attached as block devices (gVisor: loop-mounted on the host) and mounted in the guest. */
  extraDisks: ExtraDisk[];
  env: Record<string, string>;
  /** Commands keep every capability, without no_new_privs or seccomp filter (spec 2.1). */
  privileged: boolean;
  /** Isolation engine asked for by this sandbox; undefined = the engine-wide choice. */
  backend: string | undefined;
  /** Port forwards bound once the sandbox is up (none: forwards is empty). */
  portForwards: ForwardRequest;
  network: {
    allowedHosts: string[];
    blockPrivateIps: boolean;
    secrets: Record<string, { hosts: string[]; allowCleartext: boolean }>;
    /**
     * The resolvers the engine asks for allowed names. Empty (the default): the host's own
     * resolver. The guest never talks to them: its only resolver is the engine (spec: written
     * to the guest's resolv.conf, default 8.8.8.8/8.8.4.4).
     */
    dnsServers: string[];
    /** Seal the network even without allowed hosts or secrets (spec 5.2 `intercept`; interception rules imply it). */
    intercept: boolean;
    /** Rules the proxy applies to HTTP(S) requests and answers (spec 5.7). */
    interception?: InterceptionConfig;
    /** Names the guest's /etc/hosts maps to these addresses (spec 5.2 add_hosts). */
    addHosts: Array<{ host: string; ip: string }>;
    /** The guest's hostname; empty: the VM id. */
    hostname: string;
    /** The MTU of the guest's link (when it has one). */
    mtu: number;
  };
}

export interface ExtraDisk {
  hostPath: string;
  guestMount: string;
  readonly: boolean;
}

export const DEFAULTS = {
  cpus: 1,
  memoryMb: 512,
  diskSizeMb: 5120,
  timeoutSeconds: 300,
  workspace: "/workspace",
} as const;

export function mergeDefaults(p: CreateParams): SandboxConfig {
  const r = p.resources ?? {};
  const positiveOr = (v: number | undefined, d: number) => (v !== undefined && v > 0 ? v : d);
  const workspace = p.vfs?.workspace || DEFAULTS.workspace;
  const mounts = p.vfs ? { ...(p.vfs.mounts ?? {}) } : { [DEFAULTS.workspace]: { type: "memory" } };
  const net = p.network;
  return {
    image: p.image,
    privileged: p.privileged === true,
    cpus: positiveOr(r.cpus, DEFAULTS.cpus),
    memoryMb: positiveOr(r.memory_mb, DEFAULTS.memoryMb),
    diskSizeMb: positiveOr(r.disk_size_mb, DEFAULTS.diskSizeMb),
    timeoutSeconds: positiveOr(r.timeout_seconds, DEFAULTS.timeoutSeconds),
    deadlineSeconds: r.enforce_timeout ? r.timeout_seconds : undefined,
    launchEntrypoint: p.launch_entrypoint === true,
    imageConfig: imageConfigOverride(p.image_config),
    workspace,
    mounts,
    ...(p.vfs?.interception ? { vfsInterception: toVfsInterception(p.vfs.interception) } : {}),
    extraDisks: (p.extra_disks ?? []).map((d) => ({ hostPath: d.host_path, guestMount: d.guest_mount, readonly: d.readonly === true })),
    env: { ...(p.env ?? {}) },
    backend: p.backend,
    portForwards: toForwardRequest(p.port_forwards, p.port_forward_addresses),
    network: {
      allowedHosts: net ? [...(net.allowed_hosts ?? [])] : [],
      // Absent `network` means block_private_ips=true; a present one without the key means false.
      blockPrivateIps: net ? net.block_private_ips === true : true,
      // Only the hosts are kept: secret values never reach persisted state.
      secrets: Object.fromEntries(Object.entries(net?.secrets ?? {}).map(([k, s]) => [k, { hosts: [...(s.hosts ?? [])], allowCleartext: s.allow_cleartext === true }])),
      dnsServers: [...(net?.dns_servers ?? [])],
      intercept: net?.intercept === true || !!net?.interception,
      ...(net?.interception ? { interception: net.interception } : {}),
      addHosts: (net?.add_hosts ?? []).map((m) => ({ host: m.host, ip: m.ip.trim() })),
      hostname: net?.hostname ?? "",
      mtu: net?.mtu || DEFAULT_MTU,
    },
  };
}

/** What `image_config` replaces: a field is set only when the request replaces it. */
export interface ImageConfigOverride {
  user?: string;
  workingDir?: string;
  entrypoint?: string[];
  cmd?: string[];
  env?: Record<string, string>;
}

/** Spec 5.2: a non-empty user or working_dir replaces; a present entrypoint, cmd or env replaces, even when empty. */
function imageConfigOverride(c: CreateParams["image_config"]): ImageConfigOverride {
  if (!c) return {};
  return {
    ...(c.user ? { user: c.user } : {}),
    ...(c.working_dir ? { workingDir: c.working_dir } : {}),
    ...(c.entrypoint ? { entrypoint: [...c.entrypoint] } : {}),
    ...(c.cmd ? { cmd: [...c.cmd] } : {}),
    ...(c.env ? { env: { ...c.env } } : {}),
  };
}

/** The image's config with the request's overrides applied. */
export function applyImageConfig(image: ImageConfig, o: ImageConfigOverride): ImageConfig {
  return {
    user: o.user ?? image.user,
    workingDir: o.workingDir ?? image.workingDir,
    entrypoint: o.entrypoint ?? image.entrypoint,
    cmd: o.cmd ?? image.cmd,
    env: o.env ? Object.entries(o.env).map(([k, v]) => `${k}=${v}`) : image.env,
  };
}

/** The first zod issue as one readable line, e.g. "resources.cpus: must not be negative". */
export function describeZodError(err: z.ZodError): string {
  const issue = err.issues[0];
  if (!issue) return "invalid params";
  const where = issue.path.join(".");
  if (issue.code === "unrecognized_keys") {
    const names = issue.keys.map((k) => (where ? `${where}.${k}` : k));
    return `unknown field${names.length > 1 ? "s" : ""} ${names.join(", ")}: not part of the protocol this engine speaks`;
  }
  return where && !issue.message.startsWith(where) ? `${where}: ${issue.message}` : issue.message;
}
