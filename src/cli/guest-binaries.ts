// The static binaries that run inside every sandbox (the agent, and the micro-VM's init) are
// built from C for x86_64 and shipped prebuilt in the npm package. The build records what it
// made in guest/manifest.json (package version, architecture, and a sha256 of each binary and
// of the sources it came from); every engine checks the binaries against it before it serves,
// so a stale, foreign or damaged binary is refused with a clear reason instead of failing deep
// inside a sandbox's boot.
import { createHash } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { arch } from "node:os";
import { join } from "node:path";
import { paths } from "../engine/paths.js";
import { packageVersion } from "../protocol/handshake.js";
import { settings } from "../settings/settings.js";

/** The package's own root; tests pass another. */
const PACKAGE_ROOT = paths.packageFile();
const manifestPath = (root: string): string => join(root, "guest", "manifest.json");

/** Each binary, relative to the package root, with the directory of the sources it is built from. */
const GUEST_BINARIES: Record<string, string> = {
  "guest/agent/build/matchlock-agent": "guest/agent",
  "guest/microvm/build/matchlock-init": "guest/microvm",
};

const isSource = (name: string): boolean => /\.[ch]$/.test(name) || name === "Makefile";

/** The guest's machine as `uname -m` names it; the binaries are built for the host they are built on. */
const GUEST_ARCH: Partial<Record<string, string>> = { x64: "x86_64", arm64: "aarch64" };

interface Manifest {
  version: string;
  arch: string;
  binaries: Record<string, { sha256: string; sources: string }>;
}

const sha256 = (data: Buffer): string => createHash("sha256").update(data).digest("hex");

/**
 * sha256 over the C sources and Makefile in a directory, or undefined when there are none (an
 * installed package ships none).
 */
async function sourcesHash(root: string, dir: string): Promise<string | undefined> {
  const names = (await readdir(join(root, dir)).catch(() => [])).filter(isSource).sort();
  if (names.length === 0) return undefined;
  const hash = createHash("sha256");
  for (const name of names) {
    const data = await readFile(join(root, dir, name));
    hash.update(`${name}\0${data.length}\0`).update(data);
  }
  return hash.digest("hex");
}

/** Records the binaries just built (`npm run build`, and so `prepack`). */
export async function writeGuestManifest(root = PACKAGE_ROOT): Promise<void> {
  const manifest: Manifest = { version: packageVersion(), arch: GUEST_ARCH[arch()] ?? arch(), binaries: {} };
  for (const [binary, dir] of Object.entries(GUEST_BINARIES)) {
    const hash = await sourcesHash(root, dir);
    if (!hash) throw new Error(`cannot record ${binary}: its sources in ${dir} are missing`);
    manifest.binaries[binary] = { sha256: sha256(await readFile(join(root, binary))), sources: hash };
  }
  await writeFile(manifestPath(root), JSON.stringify(manifest, null, 2) + "\n");
}

/**
 * Undefined when every guest binary is the one this package's build made, for this host's
 * architecture; else what is wrong and what to do. $MATCHLOCK_AGENT (a binary the user picked)
 * is taken as it is.
 */
export async function guestBinariesProblem(root = PACKAGE_ROOT): Promise<string | undefined> {
  const fix = 'reinstall the package (npm i matchlock), or in a checkout of its repository run "npm run build"';
  const manifestFile = manifestPath(root);
  let manifest: Manifest;
  try {
    manifest = JSON.parse(await readFile(manifestFile, "utf8")) as Manifest;
  } catch (err) {
    return `the guest binaries' manifest ${manifestFile} is missing or unreadable (${(err as Error).message}): ${fix}`;
  }
  if (manifest.version !== packageVersion()) {
    return `the guest binaries were built for matchlock ${manifest.version}, but this engine is ${packageVersion()} (a stale build): ${fix}`;
  }
  const hostArch = GUEST_ARCH[arch()] ?? arch();
  if (manifest.arch !== hostArch) {
    return `the guest binaries are built for ${manifest.arch}, but this host is ${hostArch}: matchlock's package ships ${manifest.arch} binaries only; build it from its repository on this host ("npm run build")`;
  }
  for (const [binary, dir] of Object.entries(GUEST_BINARIES)) {
    if (binary.endsWith("matchlock-agent") && settings.agent.read()) continue;
    const recorded = manifest.binaries[binary];
    const file = join(root, binary);
    const data = await readFile(file).catch(() => undefined);
    if (!recorded || !data) return `the guest binary ${file} is missing: ${fix}`;
    if (sha256(data) !== recorded.sha256) {
      return `the guest binary ${file} is not the one this package's build made (its sha256 differs from ${manifestFile}): ${fix}`;
    }
    const now = await sourcesHash(root, dir);
    if (now !== undefined && now !== recorded.sources) {
      return `the guest binary ${file} is stale: its sources in ${dir} changed since it was built; run "npm run build"`;
    }
  }
  return undefined;
}
