// The seam between the sandbox lifecycle and isolation engines. Each engine is a driver
// (gvisor/, microvm/) registered in registry.ts: its name, a probe (can it run here, and how
// well, for `auto`), what it can do (capabilities, checked before anything is made), start and
// reclaim. Nothing here assumes the sandbox runs on this host: a driver says how it takes the
// image (an unpacked root file system here, or a reference its cluster pulls) and which network
// kind it joins, and the engine gives it only that.
import type { AgentConnection } from "../agent/connection.js";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";

/** What a user of the npm package runs to install what a backend is missing (src/cli/setup.ts). */
export const SETUP_COMMAND = "npx matchlock setup";

/** A mount as the backend must realise it inside the sandbox. */
export type BackendMount =
  | {
    kind: "bind"; guestPath: string; hostPath: string; readonly: boolean;
    /**
     * A user's host path: "st_dev:st_ino" of the object it named when checked (vfs/mounts.ts).
     * The backend's bind of hostPath must reach that object (SAME_OBJECT_SH), or fail.
     */
    identity?: string;
  }
  | { kind: "tmpfs"; guestPath: string };

/** An ext4 image file the sandbox mounts at `guestPath` (extra_disks). */
export interface BackendDisk {
  hostPath: string;
  guestPath: string;
  readonly: boolean;
  /**
   * The image as the engine holds it open since its check (a /proc/<pid>/fd path): what a
   * backend opens, checks and mounts, so that a link swapped onto hostPath meanwhile leads
   * nowhere. hostPath is for messages.
   */
  held?: string;
}

/**
 * How a sandbox's sealed network reaches the engine's seal (src/engine/net):
 * - "host-link": a link on this host (gVisor: a veth into a netns; micro-VM: a tap) whose host
 *   end the engine addresses and filters, with the seal's DNS and proxy listening on it;
 * - "egress-proxy": no link on this host; the sandbox's only egress is the seal run as a proxy it
 *   is pointed at (what a remote driver, e.g. a Kubernetes pod, would declare).
 */
export type NetworkKind = "host-link" | "egress-proxy";

export interface Capabilities {
  /** Host paths shared into the sandbox: none, directories only, or files and directories. */
  hostMounts: "none" | "directories" | "files and directories";
  /** Overlay mounts (a writable layer over a host directory). */
  overlay: boolean;
  /** disk_size_mb caps what the sandbox may write to its root file system. */
  diskLimit: boolean;
  /** A terminal for interactive commands. */
  pty: boolean;
  /** The network kinds it can join; empty: sandboxes without network only. */
  network: readonly NetworkKind[];
  /** How it takes the image: an unpacked root file system on this host, or the reference alone. */
  image: "unpacked" | "reference";
}

/** What a probe found: whether the driver can run sandboxes here, and its rank for `auto`. */
export interface Probe {
  /** undefined when usable; else what is missing, named (binary, privilege, device). */
  problem: string | undefined;
  /** Higher wins among usable drivers when the engine picks (`auto`). */
  rank: number;
  /** How it would run here, for `doctor` and the create log (e.g. "KVM", "TCG: no vmx/svm"). */
  detail: string;
}

/** The image as the driver asked for it (Capabilities.image). */
export type SandboxImage =
  | { kind: "unpacked"; ref: string; rootfs: string }
  | { kind: "reference"; ref: string };

/** A link on this host (NetworkKind "host-link"): the names and addresses the seal allocated. */
export interface HostLink {
  hostIp: string;
  guestIp: string;
  prefixLength: number;
  /** The link's MTU, the same on every hop from the guest's NIC to the host end (spec 5.2 network.mtu). */
  mtu: number;
  /** The host end, which the seal addresses and filters. */
  hostInterface: string;
  /** The guest end, for drivers that make a pair (veth). */
  guestInterface: string;
  /** A network namespace name the seal reserved for drivers that put the guest end in one. */
  netns: string;
}

/** Files the seal needs the guest to see (resolver, CA, trust bundles), read-only in spirit. */
export interface GuestFile {
  guestPath: string;
  hostPath: string;
}

export type SandboxNetwork =
  | { kind: "host-link"; link: HostLink; guestFiles: GuestFile[] }
  | { kind: "egress-proxy"; proxy: { host: string; port: number }; guestFiles: GuestFile[] };

export interface SandboxSpec {
  id: string;
  image: SandboxImage;
  cpus: number;
  memoryMb: number;
  /** Cap on what the sandbox may write to its root file system. */
  diskSizeMb: number;
  hostname: string;
  /** Commands keep every capability; otherwise the agent confines each (guest/agent/confine.c). */
  privileged: boolean;
  mounts: BackendMount[];
  /**
   * Some mounts are intercepted (src/engine/vfs/interception): the agent will serve them over
   * FUSE, so it needs /dev/fuse and the right to mount (the commands it starts never get it).
   */
  fuse?: boolean;
  /** ext4 images to attach, parents before children; locked for this sandbox already (disks/disk-locks.ts). */
  disks?: BackendDisk[] | undefined;
  /** Per-sandbox state directory (logs, bundle, sockets). */
  stateDir: string;
  /** File that receives the engine's and the isolation engine's log lines. */
  logFile: string;
  /** Absent: the sandbox has no network at all. Its link, if any, exists already (makeLink). */
  network?: SandboxNetwork | undefined;
  /** The client gave up on the create: stop waiting for the boot (start() then cleans up and throws). */
  signal?: AbortSignal | undefined;
}

export interface RunningSandbox {
  /** Connected agent, already READY. */
  agent: AgentConnection;
  /** Host pid of the isolation engine's process (runsc, qemu), for diagnostics. */
  pid: number | undefined;
  /** Stops the sandbox: graceful within `graceMs`, then forced. Resolves when nothing is left. */
  stop(graceMs: number): Promise<void>;
}

export interface BackendDriver {
  readonly name: string;
  /** One line for `doctor`: what this engine is. */
  readonly description: string;
  readonly capabilities: Capabilities;
  probe(): Promise<Probe>;
  /**
   * Makes the driver's end of a "host-link" network (a veth into a netns, a tap) before the
   * engine starts the seal on its host end; the seal removes it on close. Drivers without
   * "host-link" leave it out.
   */
  makeLink?(link: HostLink): Promise<void>;
  start(spec: SandboxSpec): Promise<RunningSandbox>;
  /**
   * Frees what a sandbox whose owner died may have left (processes, engine state, cgroups).
   * Returns what it cleaned, for `matchlock gc`; [] when there was nothing.
   */
  reclaim(id: string): Promise<string[]>;
}

/** The root file system of an image given unpacked, for the drivers that take it so. */
export function unpackedRootfs(image: SandboxImage): string {
  if (image.kind !== "unpacked") throw new Error(`this backend needs the image unpacked on this host, not the reference ${image.ref}`);
  return image.rootfs;
}

export class BackendUnavailableError extends EngineError {
  readonly kind: ErrorKind = "unavailable";
}

/** Asked for something the chosen backend cannot do; found before anything is made. */
export class UnsupportedByBackendError extends EngineError {
  readonly kind: ErrorKind = "unsupported";
}

/**
 * Shell functions for the scripts that bind host paths: `same_object DST IDENTITY SRC` ends the
 * script unless what is now mounted at DST is the object the engine checked (IDENTITY "-": an
 * engine-owned path, nothing to prove). The engine holds the object open meanwhile, so a
 * symlink swapped onto the path after the check leads the bind elsewhere and is caught here.
 * `changed_while_mounted SRC IDENTITY` ends it when the bind itself failed: it says the path
 * changed only when SRC is no longer the checked object (gone, or another object in its place);
 * otherwise, and for an engine-owned path ("-"), mount's own message is the reason.
 */
export const SAME_OBJECT_SH = `path_changed() {
  echo "host path $1 changed while it was being mounted (it went away, or a symbolic link or another object took its place); host paths must not contain symlinks" >&2
  exit 1
}
changed_while_mounted() {
  [ "\${2:-}" != - ] || exit 1
  [ "$(stat -c %d:%i -- "$1" 2>/dev/null)" != "$2" ] || exit 1
  path_changed "$1"
}
same_object() {
  [ "$2" = - ] || [ "$(stat -c %d:%i -- "$1")" = "$2" ] || path_changed "$3"
}`;
