// Shared set-up for end-to-end tests: a private MATCHLOCK_HOME per test file, one shared image
// store holding the locally built test images, the real CLI, and leak checks.
import { execFile, spawn } from "node:child_process";
import { existsSync, watch } from "node:fs";
import { mkdtemp, readdir, readFile } from "node:fs/promises";
import { tmpdir, homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Client } from "../../src/sdk/index.js";

const execFileP = promisify(execFile);

/** Compiled layout: dist/test/helpers/e2e.js -> the package root is three levels up. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const CLI = join(ROOT, "dist", "src", "cli", "main.js");

export const BUSYBOX = "local/busybox:latest";
export const PYTHON = "local/python:3.11";

/** Where scripts/build-test-images.sh put the test images as tarballs (busybox.tar, python.tar). */
export const TARBALLS = process.env.MATCHLOCK_TEST_IMAGES || join(homedir(), ".cache", "matchlock", "test-images");
const SHARED_IMAGES = join(tmpdir(), "matchlock-e2e-images");

/**
 * Points this process (and the engines it spawns) at a fresh state home and the shared test
 * image store, importing the test images into it if they are not there yet.
 */
export async function setUpE2E(): Promise<string> {
  if (process.getuid?.() !== 0) throw new Error("the end-to-end tests need root: gVisor's runsc needs it, and so does confining QEMU (namespaces, chroot, its own user)");
  const home = await mkdtemp(join(tmpdir(), "matchlock-e2e-"));
  process.env.MATCHLOCK_HOME = home;
  process.env.MATCHLOCK_IMAGES = SHARED_IMAGES;
  // Tests may only use loopback: an unknown image must never send the engine to Docker Hub.
  // Tests of pulling (from a registry on 127.0.0.1) set this back.
  process.env.MATCHLOCK_PULL = "never";
  const listing = await cli(["image", "ls", "--json"]);
  const have = new Set((JSON.parse(listing.stdout) as Array<{ ref: string }>).map((i) => i.ref));
  for (const [ref, file] of [[BUSYBOX, "busybox.tar"], [PYTHON, "python.tar"]] as const) {
    if ([...have].some((r) => r.endsWith(ref))) continue;
    const tar = join(TARBALLS, file);
    if (!existsSync(tar)) throw new Error(`test image ${tar} is missing: run "npm run setup" (or scripts/build-test-images.sh) first`);
    const r = await cli(["image", "import", ref, tar]);
    if (r.code !== 0) throw new Error(`importing ${ref} failed: ${r.stderr}`);
  }
  return home;
}

export function newClient(): Client {
  return new Client({ binaryPath: CLI });
}

export interface CliResult { code: number; stdout: string; stderr: string }

/** Runs the real `matchlock` CLI with the current MATCHLOCK_* environment (plus `env`). */
export function cli(args: string[], input?: string, env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    // `--` as the binary's shebang has it: Node takes an --env-file before it as its own.
    const p = spawn(process.execPath, ["--", CLI, ...args], { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("error", reject);
    p.on("close", (code) => resolvePromise({ code: code ?? -1, stdout, stderr }));
    p.stdin.end(input ?? "");
  });
}

/** The engine the e2e suites run against: $MATCHLOCK_BACKEND (npm test runs them once per engine). */
export const BACKEND = process.env.MATCHLOCK_BACKEND || "auto";

/** Host processes whose command line mentions this sandbox id (runsc, gofer, sandbox, qemu). */
export async function processesOf(vmId: string): Promise<string[]> {
  const { stdout } = await execFileP("ps", ["-eo", "pid,args"]);
  return stdout.split("\n").filter((l) => l.includes(vmId) && !l.includes("ps -eo"));
}

/** Processes (not zombies) of a process group, as "pid stat args" lines. */
export async function liveProcessesInGroup(pgid: number): Promise<string[]> {
  const { stdout } = await execFileP("ps", ["-eo", "pgid=,pid=,stat=,args="]);
  return stdout.split("\n").map((l) => l.trim().split(/\s+/)).filter(([g, , stat]) => Number(g) === pgid && !stat?.startsWith("Z")).map((f) => f.slice(1).join(" "));
}

/**
 * Everything a sandbox of either engine could leave on the host: processes (runsc's or QEMU's),
 * runsc state, cgroups, the micro-VM's runtime directory (agent socket).
 */
export async function leftovers(vmId: string, home: string): Promise<string[]> {
  const found: string[] = [...(await processesOf(vmId)).map((p) => `process: ${p.trim()}`)];
  if (existsSync(join(home, "vms", vmId, "microvm"))) found.push(`${join(home, "vms", vmId, "microvm")}/`);
  for (const dir of [join(home, "runsc"), "/sys/fs/cgroup/memory/matchlock", "/sys/fs/cgroup/cpu/matchlock"]) {
    try {
      if ((await readdir(dir)).some((n) => n.includes(vmId))) found.push(`${dir}/${vmId}*`);
    } catch {
      // the directory does not exist: nothing left there
    }
  }
  return found;
}

/**
 * Polls until `check` returns an empty list or the time is up; returns the last result. The
 * default is long: on a loaded 2-core CI machine tearing down runsc or QEMU can take many
 * seconds, and a right answer ends the wait at once (a leak still fails, only later).
 */
export async function eventually(check: () => Promise<string[]>, ms = 60_000): Promise<string[]> {
  const deadline = Date.now() + ms;
  let last = await check();
  while (last.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    last = await check();
  }
  return last;
}

/** Host-side traces of a sandbox's network: netns, host interface, nft table, slot allocation. */
export async function networkLeftovers(vmId: string): Promise<string[]> {
  const hex = vmId.replace(/^vm-/, "");
  const found: string[] = [];
  const { stdout: ns } = await execFileP("ip", ["netns", "list"]);
  if (ns.includes(`matchlock-${hex}`)) found.push("netns");
  const { stdout: links } = await execFileP("ip", ["-o", "link"]);
  if (links.includes(`mlh${hex}`)) found.push("host interface");
  const { stdout: tables } = await execFileP("nft", ["list", "tables"]);
  if (tables.includes(`matchlock_${hex}`)) found.push("nft table");
  const allocations = process.env.MATCHLOCK_NET_STATE || "/run/matchlock/net";
  for (const f of await readdir(allocations).catch(() => [] as string[])) {
    // An allocation freed between the listing and the read is gone: not a leftover.
    if ((await readFile(join(allocations, f), "utf8").catch(() => "")).includes(vmId)) found.push("allocation");
  }
  return found;
}

/** Resolves with the id of the first sandbox directory that appears under <home>/vms (which must exist). */
export function firstVm(home: string): { id: Promise<string>; stop: () => void } {
  let found!: (id: string) => void;
  const id = new Promise<string>((resolve) => (found = resolve));
  const w = watch(join(home, "vms"), (_event, name) => {
    if (name && /^vm-[0-9a-f]{8}$/.test(String(name))) found(String(name));
  });
  return { id, stop: () => w.close() };
}
