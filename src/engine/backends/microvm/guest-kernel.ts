// The guest kernel fetched by scripts/fetch-guest-kernel.sh (Debian's linux-image-amd64, as an
// uncompressed PVH vmlinux plus its module tree) and the initramfs built from it: busybox-static,
// the modules in load order, the shared static agent and guest/microvm/init.sh. The initramfs is
// cached under <cache>/microvm/initramfs-<sha256 of its inputs>.cpio.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { access, chmod, copyFile, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { promisify } from "node:util";
import { paths } from "../../paths.js";
import { BackendUnavailableError } from "../backend.js";
import { buildOnce } from "./artifact.js";
import { guestModuleSets, moduleName, parseModulesDep } from "./module-order.js";

const run = promisify(execFile);

/** Bumped whenever writeInitramfs changes what it makes of the same inputs (part of the cache key). */
const INITRAMFS_LAYOUT = 4;

export const BUSYBOX = process.env.MATCHLOCK_BUSYBOX || "/bin/busybox";

export interface GuestKernel {
  dir: string;
  release: string;
  vmlinux: string;
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
      `the micro-VM guest kernel is missing at ${dir}: fetch it with "bash scripts/fetch-guest-kernel.sh" (part of "npm run setup")`,
    );
  }
  const release = (await readFile(join(dir, "release"), "utf8")).trim();
  return { dir, release, vmlinux: join(dir, "vmlinux") };
}

/** Returns the initramfs for this kernel and agent, building it on first use. */
export async function initramfsFor(kernel: GuestKernel, agentBinary: string): Promise<string> {
  const modRoot = join(kernel.dir, "modules");
  const sets = guestModuleSets(parseModulesDep(await readFile(join(modRoot, "modules.dep"), "utf8")));
  const order = [...sets.core, ...sets.net, ...sets.ninep];
  const initScript = paths.packageFile("guest", "microvm", "init.sh");
  const inputs = [initScript, BUSYBOX, agentBinary, ...order.map((m) => join(modRoot, m))];
  const digest = await inputsDigest(`layout ${INITRAMFS_LAYOUT} ${kernel.release}`, inputs, (file) => file.startsWith(modRoot) ? file.slice(modRoot.length) : basename(file));
  const target = join(paths.cache(), "microvm", `initramfs-${digest.slice(0, 16)}.cpio`);
  return buildOnce(target, (tmp) => writeInitramfs(tmp, { initScript, agentBinary, modRoot, release: kernel.release, ...sets }));
}

/**
 * Digests already computed in this engine, by the inputs' identities (device, inode, size,
 * change and modification times in ns): hashing ~7 MB of inputs took ~40 ms of every VM start,
 * and a file rewritten in place or replaced gets a new identity.
 */
const digestByIdentity = new Map<string, string>();

async function inputsDigest(prefix: string, files: string[], nameOf: (file: string) => string): Promise<string> {
  const ids = await Promise.all(files.map(async (f) => {
    const st = await stat(f, { bigint: true });
    return `${f}\0${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  }));
  const identity = `${prefix}\0${ids.join("\0")}`;
  const known = digestByIdentity.get(identity);
  if (known) return known;
  const hash = createHash("sha256");
  hash.update(`${prefix}\0`);
  for (const file of files) {
    hash.update(nameOf(file));
    hash.update(await readFile(file));
  }
  const digest = hash.digest("hex");
  digestByIdentity.set(identity, digest);
  return digest;
}

async function writeInitramfs(
  out: string, src: { initScript: string; agentBinary: string; modRoot: string; release: string; core: string[]; net: string[]; ninep: string[] },
): Promise<void> {
  const stage = await mkdtemp(join(tmpdir(), "matchlock-initramfs-"));
  try {
    await mkdir(join(stage, "bin"));
    // Where busybox modprobe looks: /lib/modules/<release>/, with a modules.dep of its own.
    const modDir = join(stage, "lib", "modules", src.release);
    await mkdir(modDir, { recursive: true });
    await copyFile(src.initScript, join(stage, "init"));
    await chmod(join(stage, "init"), 0o755);
    await copyFile(BUSYBOX, join(stage, "bin", "busybox"));
    await chmod(join(stage, "bin", "busybox"), 0o755);
    await copyFile(src.agentBinary, join(stage, "matchlock-agent"));
    await chmod(join(stage, "matchlock-agent"), 0o755);
    const all = [...src.core, ...src.net, ...src.ninep];
    for (const m of all) await slimModule(join(src.modRoot, m), join(modDir, basename(m)));
    // No dependency edges: the init's one `modprobe -a` gets the names already in dependency
    // order (module-order.ts), so exactly these load, in that order, in one process.
    await writeFile(join(modDir, "modules.dep"), all.map((m) => `${basename(m)}:\n`).join(""));
    const list = (mods: string[]) => mods.map((m) => moduleName(m)).join("\n") + "\n";
    await writeFile(join(stage, "lib", "modules", "order"), list(src.core));
    await writeFile(join(stage, "lib", "modules", "order-net"), list(src.net));
    await writeFile(join(stage, "lib", "modules", "order-9p"), list(src.ninep));
    // One symlink per applet now, rather than `busybox --install` at every boot.
    const { stdout } = await run(BUSYBOX, ["--list"]);
    for (const applet of stdout.split("\n").filter((a) => /^[a-z0-9_.[-]+$/.test(a) && a !== "busybox")) {
      await symlink("busybox", join(stage, "bin", applet));
    }
    for (const d of ["proc", "sys", "dev"]) await mkdir(join(stage, d));
    // Uncompressed newc: the kernel unpacks it without a decompressor (seconds under TCG).
    await run("sh", ["-c", `cd "$1" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 > "$2"`, "sh", stage, out]);
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

/**
 * A module as the guest loads it fastest under TCG: without its BTF type information (which the
 * kernel parses and checks at every load, only for BPF tracing) and without Debian's appended
 * signature (which the kernel hashes and verifies; it does not enforce signatures outside Secure
 * Boot, and the initramfs is the engine's own, built from the kernel package it fetched).
 * objcopy rewrites the ELF file, which leaves the appended signature behind.
 */
async function slimModule(from: string, to: string): Promise<void> {
  try {
    await run("objcopy", ["--remove-section=.BTF", from, to]);
  } catch (err) {
    const e = err as { code?: string; stderr?: string; message: string };
    if (e.code === "ENOENT") throw new Error('objcopy was not found: install binutils ("npm run setup")');
    throw new Error(`preparing the guest kernel module ${from} failed: ${e.stderr?.trim() || e.message}`);
  }
}
