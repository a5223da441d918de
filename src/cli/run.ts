// `matchlock run`: a one-shot sandbox. Streams the command's output and exits with its code.
import type { Command } from "commander";
import { once } from "node:events";
import { resolve } from "node:path";
import { BACKEND_CHOICES } from "../engine/backends/registry.js";
import { createSandbox, engineCreateDeps, parseCreateParams } from "../engine/sandbox/create.js";
import { shellQuote } from "../engine/sandbox/shell-quote.js";
import type { WireMount } from "../protocol/rpc.js";
import { CreateCancelledError, type Sandbox } from "../engine/sandbox/sandbox.js";
import { removeVmDir } from "../engine/sandbox/state.js";
import { attachInput } from "./interactive.js";
import { describeBinding, parsePortSpec, toWireForwards } from "../protocol/port-forward.js";
import { collect } from "./options.js";

interface RunOptions {
  image: string;
  cpus?: string;
  memory?: string;
  diskSize?: string;
  timeout?: string;
  workspace: string;
  backend?: string;
  volume: string[];
  mount: string[];
  env: string[];
  allowHost: string[];
  blockPrivateIps?: boolean;
  secret: string[];
  dnsServer: string[];
  workdir?: string;
  rm: boolean;
  launchEntrypoint?: boolean;
  privileged?: boolean;
  interactive?: boolean;
  tty?: boolean;
  /** -p/--publish and --address (absent: none). */
  publish?: string[];
  address?: string[];
}


function parseBool(v: string): boolean {
  if (["true", "1", "yes"].includes(v)) return true;
  if (["false", "0", "no"].includes(v)) return false;
  throw new Error(`expected true or false, got ${JSON.stringify(v)}`);
}

/**
 * -v HOST:GUEST[:MODE], as upstream's CLI has it: by default a copy-on-write snapshot of HOST
 * (an overlay mount: the sandbox may change its copy, the host never changes); MODE `host_fs` or
 * `rw` mounts HOST itself read-write, `ro` read-only, `overlay` says the default out loud. HOST may
 * be relative (to the current directory); GUEST must be absolute.
 */
export function parseVolume(spec: string): [string, WireMount] {
  const parts = spec.split(":");
  const mode = parts.length === 3 ? parts[2]! : "overlay";
  const mount = VOLUME_MODES[mode];
  if (parts.length < 2 || parts.length > 3 || !parts[0] || !mount) {
    throw new Error(`invalid volume mount ${JSON.stringify(spec)}: use HOST:GUEST (a copy-on-write snapshot), HOST:GUEST:host_fs or HOST:GUEST:rw (read-write), or HOST:GUEST:ro (read-only)`);
  }
  const guest = absoluteGuest(parts[1]!, `invalid volume mount ${JSON.stringify(spec)}`);
  return [guest, { ...mount, host_path: resolve(parts[0]) }];
}

const VOLUME_MODES: Record<string, WireMount> = {
  overlay: { type: "overlay" },
  host_fs: { type: "host_fs" },
  rw: { type: "host_fs" },
  ro: { type: "host_fs", readonly: true },
};

/** --mount GUEST:TYPE[:HOST][:ro], any mount type of the create params (memory, host_fs, real_fs, overlay). */
function parseMount(spec: string): [string, WireMount] {
  const [guest, type, ...rest] = spec.split(":");
  const readonly = rest.at(-1) === "ro";
  if (readonly) rest.pop();
  if (!guest || !type || rest.length > 1) {
    throw new Error(`invalid mount ${JSON.stringify(spec)}: use GUEST:TYPE, GUEST:TYPE:HOST or GUEST:TYPE:HOST:ro (TYPE: memory, host_fs, real_fs, overlay)`);
  }
  const mount: WireMount = { type };
  if (rest[0]) mount.host_path = resolve(rest[0]);
  if (readonly) mount.readonly = true;
  return [absoluteGuest(guest, `invalid mount ${JSON.stringify(spec)}`), mount];
}

/** A guest path is never guessed: a relative one is refused, not put under the workspace. */
function absoluteGuest(guest: string, what: string): string {
  if (!guest.startsWith("/")) throw new Error(`${what}: the guest path ${JSON.stringify(guest)} must be absolute (e.g. /workspace/${guest})`);
  return guest;
}

/** -e KEY=VALUE */
function parseEnv(specs: string[]): Record<string, string> | undefined {
  if (specs.length === 0) return undefined;
  return Object.fromEntries(specs.map((spec) => {
    const eq = spec.indexOf("=");
    if (eq <= 0) throw new Error(`invalid environment variable ${JSON.stringify(spec)}: use KEY=VALUE`);
    return [spec.slice(0, eq), spec.slice(eq + 1)];
  }));
}

/**
 * --secret NAME@HOST[,HOST...]: the value is the environment variable NAME's, never a word of the
 * command line (which other users can read in ps); the guest sees only a placeholder.
 */
function parseSecret(spec: string, env: NodeJS.ProcessEnv): [string, { value: string; hosts: string[] }] {
  const at = spec.indexOf("@");
  const name = at === -1 ? spec : spec.slice(0, at);
  const hosts = at === -1 ? [] : spec.slice(at + 1).split(",").filter(Boolean);
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || (at !== -1 && hosts.length === 0)) {
    throw new Error(`invalid secret ${JSON.stringify(spec)}: use NAME@HOST[,HOST...] with the value in the environment variable NAME`);
  }
  const value = env[name];
  if (!value) throw new Error(`secret ${name}: set the environment variable ${name} to its value (it is not taken from the command line)`);
  return [name, { value, hosts }];
}

/** The `create` params these flags ask for, as an SDK would send them. */
export function runParams(opts: RunOptions, env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  const mounts: Record<string, WireMount> = { [opts.workspace]: { type: "memory" } };
  for (const v of opts.volume) {
    const [guest, m] = parseVolume(v);
    mounts[guest] = m;
  }
  for (const v of opts.mount) {
    const [guest, m] = parseMount(v);
    mounts[guest] = m;
  }
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const secrets = Object.fromEntries(opts.secret.map((s) => parseSecret(s, env)));
  const networked = opts.allowHost.length > 0 || opts.secret.length > 0 || opts.dnsServer.length > 0 || opts.blockPrivateIps !== undefined;
  return {
    image: opts.image,
    // --timeout is enforced (enforce_timeout), as the SDK's withTimeout() asks.
    resources: {
      cpus: num(opts.cpus), memory_mb: num(opts.memory), disk_size_mb: num(opts.diskSize),
      timeout_seconds: num(opts.timeout), enforce_timeout: opts.timeout === undefined ? undefined : true,
    },
    vfs: { workspace: opts.workspace, mounts },
    // As the SDK sends it: private ranges stay blocked unless --block-private-ips=false.
    network: networked
      ? { allowed_hosts: opts.allowHost, block_private_ips: opts.blockPrivateIps ?? true, secrets, dns_servers: opts.dnsServer }
      : undefined,
    env: parseEnv(opts.env),
    backend: opts.backend,
    launch_entrypoint: opts.launchEntrypoint,
    privileged: opts.privileged === true ? true : undefined,
    port_forwards: opts.publish?.length ? toWireForwards(opts.publish.map(parsePortSpec)) : undefined,
    port_forward_addresses: opts.address?.length ? opts.address : undefined,
  };
}

export function registerRunCommand(program: Command): void {
  program.enablePositionalOptions();
  program
    .command("run")
    .description("run a command in a new sandbox and exit with its exit code")
    .requiredOption("--image <ref>", "image to boot (see `matchlock image ls`)")
    .option("--cpus <n>", "vCPUs")
    .option("--memory <mb>", "memory in MB")
    .option("--disk-size <mb>", "disk size in MB")
    .option("--timeout <seconds>", "stop the sandbox after this long")
    .option("--launch-entrypoint", "also start the image's ENTRYPOINT + CMD, detached, before the command")
    .option("--workspace <path>", "guest workspace directory", "/workspace")
    .option("--backend <name>", `isolation engine: ${BACKEND_CHOICES.join(", ")} (default: $MATCHLOCK_BACKEND, else auto)`)
    .option("-v, --volume <host:guest[:mode]>", "mount a host directory or file: a copy-on-write snapshot (the host never changes); mode host_fs or rw: read-write, ro: read-only (repeatable)", collect, [])
    .option("--mount <guest:type[:host][:ro]>", "a mount of any type: memory, host_fs, real_fs, overlay (repeatable)", collect, [])
    .option("-e, --env <key=value>", "environment variable for the sandbox (repeatable)", collect, [])
    .option("--allow-host <pattern>", "seal the network and allow this host (glob, repeatable)", collect, [])
    .option("--block-private-ips [bool]", "with a sealed network, refuse private, loopback and link-local addresses (default true)", parseBool)
    .option("--secret <name@host[,host]>", "inject the value of the environment variable NAME for these hosts only (repeatable)", collect, [])
    .option("--dns-server <ip>", "resolver the engine asks for allowed names (repeatable)", collect, [])
    .option("-w, --workdir <dir>", "working directory of the command")
    .option("--rm [bool]", "remove the sandbox's state when done", parseBool, true)
    .option("--privileged", "commands keep every capability (no capability drop, no_new_privs or seccomp filter)")
    .option("-i, --interactive", "pass our stdin to the command (its end is the command's EOF)")
    .option("-t, --tty", "run the command on a terminal (its output is one stream; with -i our terminal goes raw)")
    .option("-p, --publish <[local:]remote>", "forward host port LOCAL to the guest's 127.0.0.1:REMOTE while the command runs (repeatable)", collect, [])
    .option("--address <ip>", "host address the -p forwards listen on (repeatable; default 127.0.0.1)", collect, [])
    .argument("[command...]", "command and arguments (use -- before a command with options)")
    .passThroughOptions()
    .action(async (command: string[], opts: RunOptions) => {
      if (command.length === 0) throw new Error("command required");
      const request = parseCreateParams(runParams(opts));
      const config = request.config;
      // A signal during the create aborts it (it undoes what it made); after, it stops the sandbox.
      const creating = new AbortController();
      let stopped: number | undefined;
      let sandbox: Sandbox | undefined;
      const finish = async () => {
        if (!sandbox) return;
        await sandbox.close();
        if (opts.rm) await removeVmDir(sandbox.id);
      };
      const stopOn = (code: number) => () => {
        stopped = code;
        if (sandbox) void finish().finally(() => process.exit(code));
        else creating.abort();
      };
      process.once("SIGINT", stopOn(130));
      process.once("SIGTERM", stopOn(143));
      try {
        sandbox = await createSandbox(request, engineCreateDeps(() => {}), creating.signal);
      } catch (err) {
        if (stopped !== undefined && err instanceof CreateCancelledError) process.exit(stopped);
        throw err;
      }
      if (stopped !== undefined) await finish().finally(() => process.exit(stopped));
      const { input, detach } = attachInput(opts);
      for (const b of sandbox.ports.bindings) process.stderr.write(`${describeBinding(b)}\n`);
      try {
        const out = await sandbox.exec(command.map(shellQuote).join(" "), { workingDir: opts.workdir, input }, {
          // A slow reader of our output slows the sandbox down instead of filling our memory.
          stdout: (d) => (process.stdout.write(d) ? undefined : once(process.stdout, "drain")),
          stderr: (d) => (process.stderr.write(d) ? undefined : once(process.stderr, "drain")),
        });
        if (out.outOfMemory) process.stderr.write(`matchlock: the command ran out of memory (killed by the OOM killer; limit ${config.memoryMb} MiB)\n`);
        process.exitCode = out.exitCode;
      } finally {
        detach();
        await finish();
      }
    });
}
