// `matchlock run`: a sandbox for one command, as `docker run`. In the foreground, the sandbox
// lives in this process: the command's output is streamed (and logged), and its exit status is
// ours; 125-127 say that it did not run (exit-status.ts); `exec` reaches it while it runs. With -d it lives in the resident engine
// (`matchlock serve`) and runs the command (or the image's) detached, until `matchlock kill`.
import type { Command } from "commander";
import { once } from "node:events";
import { join, resolve } from "node:path";
import { BACKEND_CHOICES } from "../engine/backends/registry.js";
import { createSandbox, engineCreateDeps, parseCreateParams } from "../engine/sandbox/create.js";
import { shellQuote } from "../engine/sandbox/shell-quote.js";
import type { WireMount } from "../protocol/rpc.js";
import { Method } from "../protocol/methods.js";
import { CreateCancelledError, type Sandbox } from "../engine/sandbox/sandbox.js";
import { advertiseEngineSocket, logFile, removeVmDir } from "../engine/sandbox/state.js";
import { ResidentServer } from "../engine/resident/resident-server.js";
import { paths } from "../engine/paths.js";
import { CappedLogAppender } from "../engine/sandbox/vm-log.js";
import { checkInvocable } from "./command-check.js";
import { envOptions } from "./env-options.js";
import { CliExit, EXIT_ENGINE_FAILED, failingWith } from "./exit-status.js";
import { openResident, residentSocket } from "./resident-link.js";
import { commandWords, exitStatusOnBadFlags, interactiveFlags, parseBool } from "./run-options.js";
import { attachInput } from "./interactive.js";
import { describeBinding, parsePortSpec, toWireForwards } from "../protocol/port-forward.js";
import { collect } from "./options.js";
import { parseDisk } from "./disk-options.js";
import { addHostProblem, mtuProblem } from "../protocol/network-fields.js";

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
  disk?: string[];
  env: string[];
  envFile?: string[];
  user?: string;
  entrypoint?: string;
  detach?: boolean;
  interactive?: boolean;
  tty?: boolean;
  allowHost: string[];
  blockPrivateIps?: boolean;
  secret: string[];
  dnsServer: string[];
  addHost?: string[];
  hostname?: string;
  mtu?: string;
  /** --no-network (commander's negation: false when given). */
  network?: boolean;
  networkIntercept?: boolean;
  workdir?: string;
  rm: boolean;
  launchEntrypoint?: boolean;
  privileged?: boolean;
  /** -p/--publish and --address (absent: none). */
  publish?: string[];
  address?: string[];
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

/**
 * -u, -w and --entrypoint as image_config overrides, as Docker sets them on the container: -w is
 * every command's directory (made if missing), --entrypoint also clears the image's CMD. `cmd`:
 * the command a detached run starts as the image's.
 */
function imageConfigFlags(opts: RunOptions, cmd: string[] | undefined): Record<string, unknown> | undefined {
  const config: Record<string, unknown> = {};
  if (opts.user) config.user = opts.user;
  if (opts.workdir) config.working_dir = opts.workdir;
  if (opts.entrypoint !== undefined) {
    config.entrypoint = opts.entrypoint ? [opts.entrypoint] : [];
    config.cmd = [];
  }
  if (cmd && cmd.length > 0) config.cmd = cmd;
  return Object.keys(config).length > 0 ? config : undefined;
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

/** --add-host NAME:IP, as Docker's (the IP may be IPv6: the name ends at the first colon). */
function parseAddHost(spec: string): { host: string; ip: string } {
  const colon = spec.indexOf(":");
  if (colon <= 0 || colon === spec.length - 1) throw new Error(`invalid --add-host ${JSON.stringify(spec)}: use NAME:IP (e.g. db.internal:10.0.0.5)`);
  const mapping = { host: spec.slice(0, colon), ip: spec.slice(colon + 1) };
  const problem = addHostProblem(mapping.host, mapping.ip);
  if (problem) throw new Error(`--add-host ${JSON.stringify(spec)}: ${problem}`);
  return mapping;
}

/**
 * The `network` param of these flags, as the SDK sends it: private ranges stay blocked unless
 * --block-private-ips=false. --no-network refuses every flag that needs a network.
 */
function networkParams(opts: RunOptions, secrets: Record<string, unknown>): Record<string, unknown> | undefined {
  const addHosts = (opts.addHost ?? []).map(parseAddHost);
  const mtu = opts.mtu === undefined ? undefined : Number(opts.mtu);
  if (mtu !== undefined && mtuProblem(mtu)) throw new Error(`--mtu ${opts.mtu}: ${mtuProblem(mtu)}`);
  const named = { ...(addHosts.length > 0 ? { add_hosts: addHosts } : {}), ...(opts.hostname !== undefined ? { hostname: opts.hostname } : {}) };
  if (opts.network === false) {
    const clash = [
      opts.allowHost.length > 0 && "--allow-host",
      opts.secret.length > 0 && "--secret",
      opts.dnsServer.length > 0 && "--dns-server",
      opts.networkIntercept && "--network-intercept",
      mtu !== undefined && "--mtu",
      // true asks for nothing a sandbox without a network lacks; false asks for a network.
      opts.blockPrivateIps === false && "--block-private-ips=false",
    ].filter(Boolean);
    if (clash.length > 0) throw new Error(`--no-network cannot be combined with ${clash.join(", ")}: they need a network`);
    return { no_network: true, ...named };
  }
  const networked = opts.allowHost.length > 0 || opts.secret.length > 0 || opts.dnsServer.length > 0 || opts.blockPrivateIps !== undefined ||
    opts.networkIntercept === true || addHosts.length > 0 || opts.hostname !== undefined || mtu !== undefined;
  if (!networked) return undefined;
  return {
    allowed_hosts: opts.allowHost, block_private_ips: opts.blockPrivateIps ?? true, secrets, dns_servers: opts.dnsServer,
    ...named,
    ...(mtu !== undefined ? { mtu } : {}),
    ...(opts.networkIntercept ? { intercept: true } : {}),
  };
}

/**
 * The `create` params these flags ask for, as an SDK would send them. `detachedCommand`: a
 * detached run's command, started as the image's entrypoint would be.
 */
export function runParams(opts: RunOptions, env: NodeJS.ProcessEnv = process.env, detachedCommand?: string[]): Record<string, unknown> {
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
  return {
    image: opts.image,
    // --timeout is enforced (enforce_timeout), as the SDK's withTimeout() asks.
    resources: {
      cpus: num(opts.cpus), memory_mb: num(opts.memory), disk_size_mb: num(opts.diskSize),
      timeout_seconds: num(opts.timeout), enforce_timeout: opts.timeout === undefined ? undefined : true,
    },
    vfs: { workspace: opts.workspace, mounts },
    network: networkParams(opts, secrets),
    env: envOptions(opts.env, opts.envFile ?? [], env),
    image_config: imageConfigFlags(opts, detachedCommand),
    backend: opts.backend,
    launch_entrypoint: detachedCommand ? true : opts.launchEntrypoint,
    privileged: opts.privileged === true ? true : undefined,
    port_forwards: opts.publish?.length ? toWireForwards(opts.publish.map(parsePortSpec)) : undefined,
    port_forward_addresses: opts.address?.length ? opts.address : undefined,
    extra_disks: opts.disk?.length ? opts.disk.map(parseDisk) : undefined,
  };
}

export function registerRunCommand(program: Command): void {
  program.enablePositionalOptions();
  const run = program
    .command("run")
    .description("run a command in a new sandbox and exit with its exit status (125: matchlock failed, 126: cannot invoke it, 127: not found)")
    .usage("--image REF [options] [--] [COMMAND [ARG...]]")
    .requiredOption("--image <ref>", "image to boot (see `matchlock image ls`)")
    .option("-d, --detach", "start the sandbox in the resident engine (matchlock serve), print its id and return; the command (or the image's) runs there, its output in `matchlock log ID`")
    .option("--cpus <n>", "CPUs; a fraction (0.5, 1.5) is a CPU quota, the guest seeing the next whole number")
    .option("--memory <mb>", "memory in MB")
    .option("--disk-size <mb>", "disk size in MB")
    .option("--timeout <seconds>", "stop the sandbox after this long")
    .option("--launch-entrypoint", "also start the image's ENTRYPOINT + CMD, detached, before the command")
    .option("--entrypoint <command>", "replace the image's ENTRYPOINT (and drop its CMD); \"\" clears it")
    .option("-u, --user <user>", "run as this user: name, uid or uid:gid (default: the image's USER)")
    .option("--workspace <path>", "guest workspace directory", "/workspace")
    .option("--backend <name>", `isolation engine: ${BACKEND_CHOICES.join(", ")} (default: $MATCHLOCK_BACKEND, else auto)`)
    .option("-v, --volume <host:guest[:mode]>", "mount a host directory or file: a copy-on-write snapshot (the host never changes); mode host_fs or rw: read-write, ro: read-only (repeatable)", collect, [])
    .option("--disk <@volume:guest[:ro]>", "attach a named volume (@NAME) or an ext4 image file at GUEST; :ro read-only (repeatable)", collect, [])
    .option("--mount <guest:type[:host][:ro]>", "a mount of any type: memory, host_fs, real_fs, overlay (repeatable)", collect, [])
    .option("-e, --env <key[=value]>", "environment variable for the sandbox; KEY alone takes the host's value (repeatable)", collect, [])
    .option("--env-file <file>", "read environment variables from a file, KEY=VALUE or KEY per line (repeatable)", collect, [])
    .option("--allow-host <pattern>", "seal the network and allow this host (glob, repeatable)", collect, [])
    .option("--block-private-ips [bool]", "with a sealed network, refuse private, loopback and link-local addresses (default true)", parseBool)
    .option("--secret <name@host[,host]>", "inject the value of the environment variable NAME for these hosts only (repeatable)", collect, [])
    .option("--dns-server <ip>", "resolver the engine asks for allowed names (repeatable)", collect, [])
    .option("--network-intercept", "seal the network even without --allow-host or --secret (every host denied until `matchlock allow-list add`)")
    .option("--no-network", "no network device at all, only loopback (also the default without --allow-host, --secret or --network-intercept)")
    .option("--add-host <name:ip>", "make NAME resolve to IP inside the sandbox, a line of its /etc/hosts (repeatable)", collect, [])
    .option("--hostname <name>", "the sandbox's hostname (default: its VM id)")
    .option("--mtu <bytes>", "MTU of the sandbox's network link (default 1500; needs a sealed network)")
    .option("-w, --workdir <dir>", "working directory of every command, made if missing (default: the image's WORKDIR, else the workspace)")
    .option("--rm [bool]", "remove the sandbox's state when done; --rm=false keeps it (and prints its id)", parseBool, true)
    .option("--privileged", "commands keep every capability (no capability drop, no_new_privs or seccomp filter)")
    .option("-p, --publish <[local:]remote>", "forward host port LOCAL to the guest's 127.0.0.1:REMOTE while the command runs (repeatable)", collect, [])
    .option("--address <ip>", "host address the -p forwards listen on (repeatable; default 127.0.0.1)", collect, []);
  interactiveFlags(run);
  exitStatusOnBadFlags(run);
  run
    .argument("[command...]", "command and arguments (default: the image's ENTRYPOINT + CMD; use -- before a command with options)")
    .passThroughOptions()
    .action((args: string[], opts: RunOptions) => failingWith(EXIT_ENGINE_FAILED, async () => {
      const command = commandWords(args);
      if (opts.detach && (opts.interactive || opts.tty)) throw new Error("run -d cannot be combined with -i/--interactive or -t/--tty: a detached command has no terminal or stdin of ours");
      if (opts.detach) return runDetached(command, opts);
      const request = parseCreateParams(runParams(opts));
      const config = request.config;
      // A signal during the create aborts it (it undoes what it made); after, it stops the sandbox.
      const creating = new AbortController();
      let stopped: number | undefined;
      let sandbox: Sandbox | undefined;
      let attachPoint: ResidentServer | undefined;
      const finish = async () => {
        if (!sandbox) return;
        await attachPoint?.stop("the run ended");
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
        const sb = sandbox;
        if (!opts.rm) process.stderr.write(`${sb.id}\n`);
        for (const b of sb.ports.bindings) process.stderr.write(`${describeBinding(b)}\n`);
        let detach = (): void => undefined;
        try {
          attachPoint = await serveForExec(sb);
          const image = sb.imageConfig;
          const argv = [...image.entrypoint, ...(command.length > 0 ? command : image.cmd)];
          if (argv.length === 0) throw new CliExit(EXIT_ENGINE_FAILED, `no command: the image ${config.image} has no ENTRYPOINT or CMD; give one after the options`);
          const quiet = { stdout: () => undefined, stderr: () => undefined };
          await checkInvocable(argv, async (script) => (await sb.exec(script, {}, quiet)).exitCode);
          // Its output goes to the sandbox's log too, as a detached one's does (`matchlock log ID`).
          const log = await CappedLogAppender.open(logFile(sb.id), "command");
          // -i/-t: our stdin and terminal, attached only now (the checks above must not eat input).
          const attached = attachInput(opts);
          detach = attached.detach;
          const out = await sb.exec(argv.map(shellQuote).join(" "), { input: attached.input }, {
          // A slow reader of our output slows the sandbox down instead of filling our memory.
          stdout: (d) => (void log.write(d), process.stdout.write(d) ? undefined : once(process.stdout, "drain")),
          stderr: (d) => (void log.write(d), process.stderr.write(d) ? undefined : once(process.stderr, "drain")),
        }).finally(() => log.close());
        if (out.outOfMemory) process.stderr.write(`matchlock: the command ran out of memory (killed by the OOM killer; limit ${config.memoryMb} MiB)\n`);
        process.exitCode = out.exitCode;
      } finally {
        detach();
        await finish();
      }
    }));
}

/**
 * While the command runs, `matchlock exec` reaches the sandbox through an owner-only socket in its
 * state directory, served by this process as the resident engine serves its own. Without it the
 * run goes on, and says that exec cannot reach it.
 */
async function serveForExec(sb: Sandbox): Promise<ResidentServer | undefined> {
  const socketPath = join(paths.vm(sb.id), "engine.sock");
  try {
    const server = await ResidentServer.start({ socketPath, log: () => undefined, ownsRecords: false });
    server.serveSandbox(sb);
    await advertiseEngineSocket(sb.id, socketPath);
    return server;
  } catch (err) {
    process.stderr.write(`matchlock: \`matchlock exec ${sb.id}\` will not reach this sandbox: ${(err as Error).message}\n`);
    return undefined;
  }
}

/** -d: the sandbox is made in the resident engine and left there; its id goes to stdout. */
async function runDetached(command: string[], opts: RunOptions): Promise<void> {
  const params = runParams(opts, process.env, command);
  parseCreateParams(params); // bad flags fail here, before the engine is asked
  const socket = residentSocket();
  const transport = await openResident(socket).catch((err: Error) => {
    throw new Error(`run -d keeps the sandbox in the resident engine: ${err.message}`, { cause: err });
  });
  try {
    const created = await transport.request(Method.CREATE, params);
    await transport.request(Method.DETACH);
    process.stdout.write(`${String(created.id)}\n`);
  } finally {
    await transport.shutdown(2000);
  }
}
