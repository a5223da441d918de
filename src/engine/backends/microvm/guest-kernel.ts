// The guest kernel fetched by scripts/fetch-guest-kernel.sh (Debian's linux-image-amd64, as an
// uncompressed PVH vmlinux plus its module tree) and the initramfs built from it: our static init
// (guest/microvm/init.c), the modules in load order and the shared static agent. The initramfs is
// cached under <cache>/microvm/initramfs-<sha256 of its inputs>.cpio; old ones are pruned
// (initramfs-cache.ts).
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { access, chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { promisify } from "node:util";
import { paths } from "../../paths.js";
import { BackendUnavailableError, SETUP_COMMAND } from "../backend.js";
import { buildOnce } from "./artifact.js";
import { markUsed, pruneInitramfs } from "./initramfs-cache.js";
import { FileMemo } from "./file-memo.js";
import { guestModuleSets, parseModulesDep } from "./module-order.js";

const run = promisify(execFile);

/** Bumped whenever writeInitramfs changes what it makes of the same inputs (part of the cache key). */
const INITRAMFS_LAYOUT = 6;

/** The initramfs's PID 1, built from guest/microvm/init.c by `npm run build`. */
export function initBinaryPath(): string {
  return paths.packageFile("guest", "microvm", "build", "matchlock-init");
}

export interface GuestKernel {
  dir: string;
  release: string;
  vmlinux: string;
  /** CONFIG_MODULE_FORCE_LOAD=y in the kernel's config: modules without __versions still load. */
  forceLoad: boolean;
}

export function kernelDir(): string {
  return join(paths.cache(), "microvm", "kernel");
}

export async function findGuestKernel(): Promise<GuestKernel> {
  const dir = kernelDir();
  try {
    await access(join(dir, "vmlinux"));
    await access(join(dir, "modules", "modules.dep"));
  } catch {
    throw new BackendUnavailableError(
      `the micro-VM guest kernel is missing at ${dir}: run "${SETUP_COMMAND}" (it fetches Debian's kernel)`,
    );
  }
  const release = (await readFile(join(dir, "release"), "utf8")).trim();
  return { dir, release, vmlinux: join(dir, "vmlinux"), forceLoad: await allowsForcedModules(join(dir, "config")) };
}

/** The kernel configs' answers by file identity: a config is ~260 KB, and it is asked at every VM start. */
const forcedModules = new FileMemo<boolean>();

/** CONFIG_MODULE_FORCE_LOAD=y in this config. The fetch script copies it; a kernel fetched before that has none: no. */
function allowsForcedModules(config: string): Promise<boolean> {
  return forcedModules.get([config], async () => /^CONFIG_MODULE_FORCE_LOAD=y$/m.test(await readFile(config, "utf8"))).catch(() => false);
}

/** Returns the initramfs for this kernel and agent, building it on first use. */
export async function initramfsFor(kernel: GuestKernel, agentBinary: string): Promise<string> {
  const modRoot = join(kernel.dir, "modules");
  const sets = await moduleSetsOf(join(modRoot, "modules.dep"));
  const order = [...sets.core, ...sets.net, ...sets.ninep, ...sets.fuse];
  const initBinary = initBinaryPath();
  const inputs = [initBinary, agentBinary, ...order.map((m) => join(modRoot, m))];
  const digest = await inputsDigest(`layout ${INITRAMFS_LAYOUT} ${kernel.release} force-load ${kernel.forceLoad}`, inputs, (file) => file.startsWith(modRoot) ? file.slice(modRoot.length) : basename(file));
  const target = join(paths.cache(), "microvm", `initramfs-${digest.slice(0, 16)}.cpio`);
  // Marked used before it is looked for: an engine pruning the cache meanwhile then keeps it
  // (marking a file that is not there yet fails quietly; building it below marks it anyway).
  await markUsed(target);
  let built = false;
  await buildOnce(target, (tmp) => {
    built = true;
    return writeInitramfs(tmp, { initBinary, agentBinary, modRoot, forceLoad: kernel.forceLoad, ...sets });
  });
  // Pruning is housekeeping: a failure (e.g. a read-only cache) must not stop the VM.
  if (built) await pruneInitramfs(dirname(target), target).catch(() => undefined);
  return target;
}

/** Parsed module lists by modules.dep identity: parsing its ~4,000 entries took ~30 ms. */
const moduleSets = new FileMemo<ReturnType<typeof guestModuleSets>>();

function moduleSetsOf(modulesDep: string): Promise<ReturnType<typeof guestModuleSets>> {
  return moduleSets.get([modulesDep], async () => guestModuleSets(parseModulesDep(await readFile(modulesDep, "utf8"))));
}

/** Digests by the inputs' identities: hashing the inputs took ~40 ms of every VM start. */
const digests = new FileMemo<string>();

function inputsDigest(prefix: string, files: string[], nameOf: (file: string) => string): Promise<string> {
  return digests.get(files, async () => {
    const hash = createHash("sha256");
    hash.update(`${prefix}\0`);
    for (const file of files) {
      hash.update(nameOf(file));
      hash.update(await readFile(file));
    }
    return hash.digest("hex");
  }, prefix);
}

async function writeInitramfs(
  out: string, src: { initBinary: string; agentBinary: string; modRoot: string; forceLoad: boolean; core: string[]; net: string[]; ninep: string[]; fuse: string[] },
): Promise<void> {
  const stage = await mkdtemp(join(tmpdir(), "matchlock-initramfs-"));
  try {
    const modDir = join(stage, "lib", "modules");
    await mkdir(modDir, { recursive: true });
    await copyFile(src.initBinary, join(stage, "init"));
    await chmod(join(stage, "init"), 0o755);
    await copyFile(src.agentBinary, join(stage, "matchlock-agent"));
    await chmod(join(stage, "matchlock-agent"), 0o755);
    const sections = src.forceLoad ? SLIMMED_SECTIONS : SLIMMED_SECTIONS.filter((name) => name !== "__versions");
    for (const m of [...src.core, ...src.net, ...src.ninep, ...src.fuse]) await slimModule(join(src.modRoot, m), join(modDir, basename(m)), sections);
    // The init loads each list's files in order (dependencies first: module-order.ts).
    const list = (mods: string[]) => mods.map((m) => `/lib/modules/${basename(m)}\n`).join("");
    await writeFile(join(modDir, "order"), list(src.core));
    await writeFile(join(modDir, "order-net"), list(src.net));
    await writeFile(join(modDir, "order-9p"), list(src.ninep));
    await writeFile(join(modDir, "order-fuse"), list(src.fuse));
    for (const d of ["proc", "sys", "dev"]) await mkdir(join(stage, d));
    // Uncompressed newc: the kernel unpacks it without a decompressor (seconds under TCG).
    await run("sh", ["-c", `cd "$1" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 > "$2"`, "sh", stage, out]);
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

/**
 * Sections the guest's kernel would process at every load of a module, for features a sandbox
 * guest never uses. Under TCG each costs real boot time (instruction counts measured with QEMU's
 * -icount for the 11 core modules: 73 M before, 22 M after; ext4 alone 49 M -> 6 M):
 * - .BTF: type information the kernel parses and checks, only for BPF tracing;
 * - __mcount_loc: the ftrace call sites, which the loader rewrites one by one into NOPs with
 *   text_poke (33 M instructions, the largest part). Without it the calls to __fentry__ stay and
 *   return at once: the module's functions cannot be traced, which nobody does in a sandbox;
 * - .orc_unwind(_ip): the ORC unwinder's tables, sorted at every load (10 M); without them a
 *   kernel stack trace through these modules is marked unreliable, nothing else changes;
 * - __versions: the CRC of every symbol the module uses, each found by a linear scan (8 M).
 *   The kernel and its modules come from one package; the kernel still checks the module's
 *   version magic, and loads it as "forced" (a taint flag only). A kernel built without
 *   CONFIG_MODULE_FORCE_LOAD would refuse such modules, so then __versions stays.
 * objcopy rewrites the ELF file, which also leaves Debian's appended signature behind: the kernel
 * does not enforce signatures outside Secure Boot, and the initramfs is the engine's own.
 */
const SLIMMED_SECTIONS = [".BTF", "__mcount_loc", ".orc_unwind", ".orc_unwind_ip", "__versions"];

async function slimModule(from: string, to: string, sections: string[]): Promise<void> {
  try {
    await run("objcopy", [...sections.map((name) => `--remove-section=${name}`), from, to]);
  } catch (err) {
    const e = err as { code?: string; stderr?: string; message: string };
    if (e.code === "ENOENT") throw new Error(`objcopy was not found: run "${SETUP_COMMAND}" (it installs binutils)`);
    throw new Error(`preparing the guest kernel module ${from} failed: ${e.stderr?.trim() || e.message}`);
  }
}
