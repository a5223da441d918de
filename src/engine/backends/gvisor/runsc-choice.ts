// Which runsc the engine runs, and on which gVisor platform.
//
// The binary: $MATCHLOCK_RUNSC when set; else the current runsc `matchlock setup` fetched into
// the cache (scripts/fetch-runsc.sh); else the host's runsc on PATH (Debian 12's is from 2022
// and has no systrap).
//
// The platform (how the Sentry intercepts the guest's system calls) decides most of gVisor's
// speed on syscall-heavy work: kvm is fastest on bare metal with VT-x/AMD-V, systrap elsewhere
// (inside VMs), ptrace is the slowest and the only one older builds have beside kvm. The engine
// asks the binary which it offers (`runsc help platforms`), skips kvm without real hardware
// virtualisation (a PVM /dev/kvm hangs it), and runs `/bin/true` on the best remaining one to
// see that it works; the first that does wins. $MATCHLOCK_RUNSC_PLATFORM forces one.
//
// The probe takes a few hundred milliseconds, so its outcome is kept in the cache, keyed by the
// binary (path, size, mtime), the host kernel and whether kvm was a candidate: a cold engine
// only reads a small file.
import { mkdtemp, readFile, realpath, rename, rm, stat, writeFile, mkdir, access, constants } from "node:fs/promises";
import { release, tmpdir } from "node:os";
import { join } from "node:path";
import { runCommand } from "../../host-commands.js";
import { paths } from "../../paths.js";
import { settings } from "../../../settings/settings.js";
import { chooseAccel, hostFacts } from "../microvm/accel.js";
import { findOnPath } from "../process-helpers.js";
import { BackendUnavailableError, SETUP_COMMAND } from "../backend.js";

/** Fastest first: the order the engine tries them in. */
const PLATFORMS_BY_SPEED = ["kvm", "systrap", "ptrace"] as const;

/** A platform that does not run `/bin/true` within this long does not work here (kvm can hang). */
const TRIAL_TIMEOUT_MS = 30_000;

export interface RunscChoice {
  /** The runsc binary, as spawned. */
  binary: string;
  /** Why this binary, for `doctor`. */
  binaryReason: string;
  /** What `runsc --version` says, e.g. "0.0~20240729.0". */
  version: string;
  /** The platforms it offers. */
  platforms: string[];
  platform: string;
  /** Why this platform, for `doctor`. */
  platformReason: string;
  /** It has the --directfs flag (builds from 2023 on; on by default there). */
  hasDirectfs: boolean;
  /** How --overlay2 names a directory medium: "dir=" (builds from 2023 on), "" (a bare path before). */
  overlayDirPrefix: string;
}

/**
 * Flags every sandbox gets from a runsc that knows them. directfs off: with it on (the default
 * since 2023) the Sentry opens host files itself and so keeps root (in a user namespace mapped
 * to the host's root) with CAP_DAC_OVERRIDE, where without it the Sentry runs as nobody and
 * only the gofer touches host files. A guest that broke into the Sentry would get the former.
 * The price: host-mount file work is slower; the image's root file system, whose writes stay in
 * runsc's own overlay (its filestore on a tmpfs), is not.
 * --cpu-num-from-quota (every build we run has it): the guest sees ceil(quota) CPUs, at least 2
 * (runsc's floor), not the host's. runsc runs its kernel on as many threads as it shows, and
 * fewer than 2 made every exec slower; the agent's --cpus confines commands to ceil(cpus).
 */
export function sandboxFlags(hasDirectfs: boolean): string[] {
  return ["--cpu-num-from-quota", ...(hasDirectfs ? ["--directfs=false"] : [])];
}

/** The current runsc fetched by `matchlock setup` (scripts/fetch-runsc.sh). */
export function cachedRunsc(): string {
  return join(paths.cache(), "gvisor", "runsc", "runsc");
}

/** The binary to run, and why; undefined when there is none. */
export async function runscBinary(): Promise<{ binary: string; reason: string } | undefined> {
  const forced = settings.runsc.read();
  if (forced) {
    const found = await findOnPath(forced);
    return found ? { binary: found, reason: "set by MATCHLOCK_RUNSC" } : undefined;
  }
  const cached = cachedRunsc();
  if (await access(cached, constants.X_OK).then(() => true, () => false)) {
    return { binary: cached, reason: `the current runsc fetched by "${SETUP_COMMAND}" (Debian backports) into the cache` };
  }
  const onPath = await findOnPath("runsc");
  return onPath ? { binary: onPath, reason: `the host's runsc on PATH (run "${SETUP_COMMAND}" to fetch a current one)` } : undefined;
}

interface CachedProbe {
  key: string;
  version: string;
  hasDirectfs: boolean;
  overlayDirPrefix: string;
  platforms: string[];
  platform: string;
  reason: string;
}

let memo: { key: string; choice: Promise<RunscChoice> } | undefined;

/** The runsc and platform sandboxes run with; probed once per binary and host, then cached. */
export function runscChoice(): Promise<RunscChoice> {
  const key = JSON.stringify([settings.runsc.read(), settings.runscPlatform.read(), paths.cache()]);
  if (memo?.key !== key) {
    const choice = choose();
    memo = { key, choice };
    // A failed probe is not kept: the next sandbox tries again (after the user fixed it).
    choice.catch(() => { if (memo?.choice === choice) memo = undefined; });
  }
  return memo.choice;
}

async function choose(): Promise<RunscChoice> {
  const found = await runscBinary();
  if (!found) {
    const looked = settings.runsc.read() ? `"${settings.runsc.read()}" (MATCHLOCK_RUNSC)` : `${cachedRunsc()} nor runsc on PATH`;
    throw new BackendUnavailableError(`gVisor's runsc was not found (looked for ${looked}): run "${SETUP_COMMAND}" (it fetches runsc)`);
  }
  const { binary, reason: binaryReason } = found;
  const forced = settings.runscPlatform.read();
  const accel = chooseAccel(await hostFacts(), "auto");
  const kvmCandidate = accel.accel === "kvm";
  const key = await probeKey(binary, kvmCandidate);
  const cacheFile = join(paths.cache(), "gvisor", "platform-probes.json");
  const cache = await readProbeCache(cacheFile);
  let probe = cache[binary]?.key === key ? cache[binary] : undefined;
  if (!probe) {
    probe = { key, ...(await probePlatforms(binary, kvmCandidate ? undefined : accel.reason.replace(/^TCG: /, ""))) };
    // Only a success is kept: a failure may be passing (a host short of memory), and is
    // tried again by the next sandbox.
    if (probe.platform) await writeProbeCache(cacheFile, { ...(await readProbeCache(cacheFile)), [binary]: probe });
  }
  if (forced && forced !== "auto") {
    if (!probe.platforms.includes(forced)) {
      throw new BackendUnavailableError(`MATCHLOCK_RUNSC_PLATFORM=${forced}, but ${binary} (${probe.version}) offers only ${probe.platforms.join(", ")}`);
    }
    return { binary, binaryReason, version: probe.version, hasDirectfs: probe.hasDirectfs, overlayDirPrefix: probe.overlayDirPrefix, platforms: probe.platforms, platform: forced, platformReason: "set by MATCHLOCK_RUNSC_PLATFORM" };
  }
  if (!probe.platform) throw new BackendUnavailableError(`no gVisor platform works here with ${binary} (${probe.version}): ${probe.reason}`);
  return { binary, binaryReason, version: probe.version, hasDirectfs: probe.hasDirectfs, overlayDirPrefix: probe.overlayDirPrefix, platforms: probe.platforms, platform: probe.platform, platformReason: probe.reason };
}

async function probeKey(binary: string, kvmCandidate: boolean): Promise<string> {
  const real = await realpath(binary);
  const s = await stat(real);
  // The first element names what a probe records: a record of another shape is probed again.
  return JSON.stringify(["v3", real, s.size, s.mtimeMs, release(), kvmCandidate]);
}

/** Asks the binary what it offers and tries the fastest candidates until one runs. */
async function probePlatforms(binary: string, kvmSkipped: string | undefined): Promise<Omit<CachedProbe, "key">> {
  const versionOut = await runCommand(binary, ["--version"], { timeoutMs: TRIAL_TIMEOUT_MS });
  if (versionOut.status !== 0) {
    throw new BackendUnavailableError(`${binary} --version failed: ${(versionOut.stderr || versionOut.spawnError?.message || "killed").trim()}`);
  }
  const version = /version\s+(\S+)/.exec(versionOut.stdout)?.[1] ?? versionOut.stdout.trim();
  const flags = await runCommand(binary, ["flags"], { timeoutMs: TRIAL_TIMEOUT_MS });
  const hasDirectfs = /^\s*-directfs\b/m.test(flags.stdout + flags.stderr);
  const overlayDirPrefix = /'dir=\/abs\//.test(flags.stdout + flags.stderr) ? "dir=" : "";
  const help = await runCommand(binary, ["help", "platforms"], { timeoutMs: TRIAL_TIMEOUT_MS });
  const platforms = help.status === 0 ? help.stdout.split("\n").map((l) => l.trim()).filter((l) => /^[a-z0-9_-]+$/.test(l)) : [];
  if (platforms.length === 0) throw new BackendUnavailableError(`${binary} listed no platforms (runsc help platforms): ${help.stderr.trim()}`);
  const notes: string[] = [];
  for (const platform of PLATFORMS_BY_SPEED) {
    if (!platforms.includes(platform)) {
      notes.push(`no ${platform} in this runsc`);
      continue;
    }
    if (platform === "kvm" && kvmSkipped) {
      notes.push(`kvm skipped: ${kvmSkipped}`);
      continue;
    }
    const failure = await trial(binary, platform, hasDirectfs);
    if (failure === undefined) {
      return { version, hasDirectfs, overlayDirPrefix, platforms, platform, reason: [`the fastest of ${platforms.join(", ")} that runs here`, ...notes].join("; ") };
    }
    notes.push(`${platform}: ${failure}`);
  }
  return { version, hasDirectfs, overlayDirPrefix, platforms, platform: "", reason: notes.join("; ") };
}

/** Runs `/bin/true` in a throw-away sandbox on `platform`: undefined when it worked, else why not. */
async function trial(binary: string, platform: string, hasDirectfs: boolean): Promise<string | undefined> {
  const root = await mkdtemp(join(tmpdir(), "matchlock-platform-"));
  try {
    const flags = ["--root", root, `--platform=${platform}`, "--network=none", ...sandboxFlags(hasDirectfs)];
    const r = await runCommand(binary, [...flags, "do", "/bin/true"], { timeoutMs: TRIAL_TIMEOUT_MS, maxOutputBytes: 64 * 1024 });
    if (r.status === 0) return undefined;
    // A hung trial leaves its sandbox behind: delete what this root holds.
    const left = await runCommand(binary, ["--root", root, "list", "-quiet"], { timeoutMs: TRIAL_TIMEOUT_MS });
    for (const id of left.stdout.split("\n").filter(Boolean)) {
      await runCommand(binary, ["--root", root, "delete", "--force", id], { timeoutMs: TRIAL_TIMEOUT_MS });
    }
    if (r.timedOut) return `did not run /bin/true within ${TRIAL_TIMEOUT_MS / 1000} s`;
    const why = r.stderr.trim().split("\n").pop() ?? "";
    return `/bin/true failed (status ${r.status ?? "killed"}${why ? `: ${why.slice(0, 200)}` : ""})`;
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

async function readProbeCache(file: string): Promise<Record<string, CachedProbe>> {
  try {
    const parsed: unknown = JSON.parse(await readFile(file, "utf8"));
    return parsed && typeof parsed === "object" ? (parsed as Record<string, CachedProbe>) : {};
  } catch {
    return {};
  }
}

/** Written whole and renamed: engines starting side by side never read half a file. */
async function writeProbeCache(file: string, content: Record<string, CachedProbe>): Promise<void> {
  await mkdir(join(file, ".."), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(content, null, 2));
  await rename(tmp, file);
}
