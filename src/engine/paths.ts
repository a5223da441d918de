import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { defaultEngineSocket, matchlockHome } from "../protocol/engine-home.js";
import { settings } from "../settings/settings.js";

/** The package root (this file is src/engine/paths.ts, compiled to dist/src/engine/paths.js). */
const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

export const paths = {
  vms: () => join(matchlockHome(), "vms"),
  vm: (id: string) => join(matchlockHome(), "vms", id),
  /** The image store; $MATCHLOCK_IMAGES puts it elsewhere (e.g. shared by test homes). */
  images: () => settings.images.read() || join(matchlockHome(), "images"),
  /** Where `matchlock serve` listens by default (the directory is owner-only). */
  engineSocket: () => defaultEngineSocket(),
  /** Named volumes: one ext4 image per volume, <name>.ext4. */
  volumes: () => join(matchlockHome(), "volumes"),
  /** Which sandbox holds each attached disk (disks/disk-locks.ts). */
  diskLocks: () => join(matchlockHome(), "disk-locks"),
  runscRoot: () => join(matchlockHome(), "runsc"),
  /** Built artifacts keyed by content (guest kernel, initramfs): $MATCHLOCK_CACHE, else ~/.cache/matchlock. */
  cache: () => settings.cache.read() || join(homedir(), ".cache", "matchlock"),
  /** Files shipped with the package, e.g. guest/microvm/build/matchlock-init. */
  packageFile: (...parts: string[]) => join(packageRoot, ...parts),
  /** The host helper that runs runsc under a filter refusing set-id mode bits (host/setid-guard). */
  setidGuard: () => join(packageRoot, "host", "setid-guard", "build", "matchlock-setid-guard"),
  /** The host helper that makes a gVisor sandbox's private mount namespace (host/private-mounts). */
  privateMounts: () => join(packageRoot, "host", "private-mounts", "build", "matchlock-private-mounts"),
  /** The static agent binary put into every sandbox; $MATCHLOCK_AGENT overrides it. */
  agentBinary: () => settings.agent.read() || join(packageRoot, "guest", "agent", "build", "matchlock-agent"),
};
