// The sandboxes of one resident engine, for its sessions to share: a session may `attach` to a
// sandbox another one runs (`matchlock exec`), and `detach` its own so that it outlives the
// connection (`matchlock run -d`). A detached sandbox is then the hub's: it runs until
// `matchlock kill`, its timeout, or the engine's stop.
import type { Sandbox } from "../sandbox/sandbox.js";

export class SandboxHub {
  /** Every running sandbox of this engine, by id: sessions' own and detached ones. */
  private readonly running = new Map<string, Sandbox>();
  private readonly detached = new Set<string>();

  add(sandbox: Sandbox): void {
    this.running.set(sandbox.id, sandbox);
  }

  /** A session let its sandbox go (it stopped it, or its create was undone). */
  remove(id: string): void {
    if (!this.detached.has(id)) this.running.delete(id);
  }

  /** A running sandbox of this engine, if there is one with this id. */
  find(id: string): Sandbox | undefined {
    const sandbox = this.running.get(id);
    if (sandbox?.stopped) {
      this.running.delete(id);
      this.detached.delete(id);
      return undefined;
    }
    return sandbox;
  }

  /** From now on the sandbox is the hub's, not its session's. */
  detach(sandbox: Sandbox): void {
    this.running.set(sandbox.id, sandbox);
    this.detached.add(sandbox.id);
  }

  isDetached(id: string): boolean {
    return this.detached.has(id);
  }

  detachedIds(): string[] {
    return [...this.detached];
  }

  /** Stops a detached sandbox (kill, engine stop); the hub forgets it. */
  async stop(id: string): Promise<void> {
    const sandbox = this.running.get(id);
    this.running.delete(id);
    this.detached.delete(id);
    await sandbox?.close();
  }
}
