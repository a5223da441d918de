// `matchlock run`: a one-shot sandbox. Streams the command's output and exits with its code.
import type { Command } from "commander";
import { once } from "node:events";
import { resolve } from "node:path";
import { chooseBackend } from "../engine/backends/select.js";
import { shellQuote } from "../engine/sandbox/shell-quote.js";
import { createParamsSchema, describeZodError, mergeDefaults, type WireMount } from "../engine/sandbox/create-config.js";
import { CreateCancelledError, Sandbox } from "../engine/sandbox/sandbox.js";
import { removeVmDir } from "../engine/sandbox/state.js";

interface RunOptions {
  image: string;
  cpus?: string;
  memory?: string;
  diskSize?: string;
  workspace: string;
  backend?: string;
  volume: string[];
  workdir?: string;
  rm: boolean;
  privileged?: boolean;
}


function parseBool(v: string): boolean {
  if (["true", "1", "yes"].includes(v)) return true;
  if (["false", "0", "no"].includes(v)) return false;
  throw new Error(`expected true or false, got ${JSON.stringify(v)}`);
}

/** -v HOST:GUEST[:ro]; a relative guest path lands under the workspace. */
function parseVolume(spec: string, workspace: string): [string, WireMount] {
  const parts = spec.split(":");
  const readonly = parts.length === 3 && parts[2] === "ro";
  if (parts.length < 2 || parts.length > 3 || (parts.length === 3 && !readonly)) {
    throw new Error(`invalid volume mount ${JSON.stringify(spec)}: use HOST:GUEST or HOST:GUEST:ro`);
  }
  const guest = parts[1]!.startsWith("/") ? parts[1]! : `${workspace}/${parts[1]}`;
  return [guest, { type: "host_fs", host_path: resolve(parts[0]!), readonly }];
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
    .option("--workspace <path>", "guest workspace directory", "/workspace")
    .option("--backend <name>", "isolation engine: microvm, gvisor or auto (default: $MATCHLOCK_BACKEND, else auto)")
    .option("-v, --volume <host:guest[:ro]>", "mount a host directory (repeatable)", (v: string, acc: string[]) => [...acc, v], [])
    .option("-w, --workdir <dir>", "working directory of the command")
    .option("--rm [bool]", "remove the sandbox's state when done", parseBool, true)
    .option("--privileged", "commands keep every capability (no capability drop, no_new_privs or seccomp filter)")
    .argument("[command...]", "command and arguments (use -- before a command with options)")
    .passThroughOptions()
    .action(async (command: string[], opts: RunOptions) => {
      if (command.length === 0) throw new Error("command required");
      const mounts: Record<string, WireMount> = { [opts.workspace]: { type: "memory" } };
      for (const v of opts.volume) {
        const [guest, m] = parseVolume(v, opts.workspace);
        mounts[guest] = m;
      }
      const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
      const params = createParamsSchema.safeParse({
        image: opts.image,
        resources: { cpus: num(opts.cpus), memory_mb: num(opts.memory), disk_size_mb: num(opts.diskSize) },
        vfs: { workspace: opts.workspace, mounts },
        backend: opts.backend,
        privileged: opts.privileged === true ? true : undefined,
      });
      if (!params.success) throw new Error(describeZodError(params.error));
      const config = mergeDefaults(params.data);
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
        sandbox = await Sandbox.create(config, (await chooseBackend(config.backend)).backend, {}, creating.signal);
      } catch (err) {
        if (stopped !== undefined && err instanceof CreateCancelledError) process.exit(stopped);
        throw err;
      }
      if (stopped !== undefined) await finish().finally(() => process.exit(stopped));
      try {
        const out = await sandbox.exec(command.map(shellQuote).join(" "), { workingDir: opts.workdir }, {
          // A slow reader of our output slows the sandbox down instead of filling our memory.
          stdout: (d) => (process.stdout.write(d) ? undefined : once(process.stdout, "drain")),
          stderr: (d) => (process.stderr.write(d) ? undefined : once(process.stderr, "drain")),
        });
        if (out.outOfMemory) process.stderr.write(`matchlock: the command ran out of memory (killed by the OOM killer; limit ${config.memoryMb} MiB)\n`);
        process.exitCode = out.exitCode;
      } finally {
        await finish();
      }
    });
}
