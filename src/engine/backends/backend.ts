// The seam between sandbox lifecycle and isolation engines: gVisor (backends/gvisor) and
// QEMU micro-VMs (backends/microvm) implement the same interface.
import type { AgentConnection } from "../agent/connection.js";

/** What a user of the npm package runs to install what a backend is missing (src/cli/setup.ts). */
export const SETUP_COMMAND = "npx matchlock setup";

/** A mount as the backend must realise it inside the sandbox. */
export type BackendMount =
  | { kind: "bind"; guestPath: string; hostPath: string; readonly: boolean }
  | { kind: "tmpfs"; guestPath: string };

export interface SandboxSpec {
  id: string;
  /** Absolute path of the image's unpacked root file system; never modified. */
  rootfs: string;
  cpus: number;
  memoryMb: number;
  /** Cap on what the sandbox may write to its root file system. */
  diskSizeMb: number;
  hostname: string;
  /** Commands keep every capability; otherwise the agent confines each (guest/agent/agent.c). */
  privileged: boolean;
  mounts: BackendMount[];
  /** Per-sandbox state directory (logs, bundle, sockets). */
  stateDir: string;
  /** File that receives the engine's and the isolation engine's log lines. */
  logFile: string;
  /** Absent: the sandbox has no network at all. */
  network?: SandboxNetwork | undefined;
  /** The client gave up on the create: stop waiting for the boot (start() then cleans up and throws). */
  signal?: AbortSignal | undefined;
}

/**
 * A sandbox's sealed network (src/engine/net): the backend creates the link (veth, tap) with
 * these names and addresses, then calls attach() so the engine's DNS, proxy and firewall start
 * on the host end. The guest's only route is via hostIp, and the guestFiles (resolver, CA, trust
 * bundles) must be in place before the first exec. Teardown belongs to the seal.
 */
export interface SandboxNetwork {
  link: {
    hostIp: string;
    guestIp: string;
    prefixLength: number;
    netns: string;
    hostInterface: string;
    guestInterface: string;
  };
  guestFiles: Array<{ guestPath: string; hostPath: string }>;
  attach(): Promise<void>;
}

export interface RunningSandbox {
  /** Connected agent, already READY. */
  agent: AgentConnection;
  /** Host pid of the isolation engine's process (runsc, qemu), for diagnostics. */
  pid: number | undefined;
  /** Stops the sandbox: graceful within `graceMs`, then forced. Resolves when nothing is left. */
  stop(graceMs: number): Promise<void>;
}

export interface Backend {
  readonly name: string;
  /** Throws BackendUnavailableError with the missing piece named (binary, privilege). */
  checkAvailable(): Promise<void>;
  start(spec: SandboxSpec): Promise<RunningSandbox>;
  /**
   * Frees what a sandbox whose owner died may have left on the host (processes, engine state,
   * cgroups). Returns what it cleaned, for `matchlock gc`; [] when there was nothing.
   */
  reclaim(id: string): Promise<string[]>;
}

export class BackendUnavailableError extends Error {}
