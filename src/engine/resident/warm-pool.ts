// A resident engine's warm spare: when a sandbox closes, the engine boots one more exactly like
// it, and the next `create` that asks for exactly the same gets that one at once instead of
// waiting for a boot. Agents tend to launch the same sandbox over and over, and a boot is most
// of a cold start (runsc's own start, or QEMU's).
//
// Only sandboxes whose whole state is made at boot from the request and the image qualify: a
// spare made earlier must be indistinguishable from one made now. So no host paths (a snapshot
// or bind of the host taken before the client asked), no extra disks, no port forwards (host
// ports held for nobody), no secrets (their values would wait in memory for a client that may
// never come), no interception rules or file events (callbacks bound to a session). A sealed
// network with allowed hosts qualifies: its events are relayed to whichever session takes the
// spare. So does the image's entrypoint (the SDK's launch asks for it): it starts at boot, as in
// any sandbox, only earlier. The image must still be the one the reference names when the spare
// is taken, and its deadline starts then.
//
// One spare at a time (for the request of the sandbox that closed last), booted only after a
// sandbox closes, so that it never competes with a client's own create or first commands.
import type { NetworkEventSink } from "../net/events.js";
import { createSandbox, type CreateDeps, type CreateRequest } from "../sandbox/create.js";
import type { Sandbox } from "../sandbox/sandbox.js";
import { removeVmDir, takeStopRequest, unmarkSpare } from "../sandbox/state.js";

interface Spare {
  key: string;
  /** The image digest the spare booted from: it is handed out only while the reference still names it. */
  digest: string;
  made: Promise<Sandbox | undefined>;
  /** Where the spare's network events go: nowhere until a session takes it. */
  relay: { onEvent?: NetworkEventSink | undefined };
}

/**
 * Lets a spare go (replaced, killed, engine stop): it stops once booted, or at once, and its
 * record goes with it: it was never anybody's sandbox.
 */
async function drop(spare: Spare | undefined): Promise<void> {
  const sandbox = await spare?.made;
  if (!sandbox) return;
  await sandbox.close().then(() => removeVmDir(sandbox.id)).catch(() => undefined);
}

/** The request as the key a spare must match, or undefined when such a sandbox cannot be made ahead. */
export function spareKey({ config: c, secrets }: CreateRequest): string | undefined {
  const madeAtBoot =
    secrets.length === 0 && Object.keys(c.network.secrets).length === 0 && !c.network.interception && !c.vfsInterception &&
    c.extraDisks.length === 0 && c.portForwards.forwards.length === 0 &&
    Object.values(c.mounts).every((m) => m.type === "memory");
  return madeAtBoot ? JSON.stringify(c) : undefined;
}

export class WarmPool {
  private spare: Spare | undefined;
  private closed = false;

  constructor(private readonly deps: CreateDeps) {}

  /**
   * The spare, if it was made for exactly this request and is up, with the image the reference
   * names now; it is then the caller's (its events go to onEvent). Undefined: make one as usual.
   */
  async take(request: CreateRequest, onEvent: NetworkEventSink): Promise<Sandbox | undefined> {
    const key = spareKey(request);
    const spare = this.spare;
    if (key === undefined || spare?.key !== key) return undefined;
    this.spare = undefined;
    const sandbox = await spare.made; // still booting: no later than a boot of its own
    if (!sandbox) return undefined;
    const image = await this.deps.images.resolve(request.config.image).catch(() => undefined);
    if (sandbox.stopped || sandbox.lost || image?.digest !== spare.digest) {
      this.deps.log(`warm spare ${sandbox.id} not used: ${image?.digest !== spare.digest ? `image ${request.config.image} changed` : "it stopped"}`);
      void drop(spare);
      return undefined;
    }
    spare.relay.onEvent = onEvent;
    await unmarkSpare(sandbox.id);
    sandbox.setDeadline(request.config.deadlineSeconds);
    this.deps.log(`warm spare ${sandbox.id} handed out`);
    return sandbox;
  }

  /** A sandbox made from this request (a spare or not): once it closes, a spare like it is booted. */
  watch(sandbox: Sandbox, request: CreateRequest): void {
    const key = spareKey(request);
    if (key !== undefined) void sandbox.whenClosed.then(() => this.refill(key, request));
  }

  /** `matchlock kill` of the spare: it stops, and the next sandbox to close makes another. */
  async stopRequested(): Promise<void> {
    const spare = this.spare;
    const sandbox = await spare?.made;
    if (!spare || !sandbox || this.spare !== spare || !(await takeStopRequest(sandbox.id))) return;
    this.spare = undefined;
    this.deps.log(`warm spare ${sandbox.id} stopped: matchlock kill`);
    await drop(spare);
  }

  /** Stops the spare (engine stop); none is made after this. */
  async close(): Promise<void> {
    this.closed = true;
    const spare = this.spare;
    this.spare = undefined;
    await drop(spare);
  }

  private async refill(key: string, request: CreateRequest): Promise<void> {
    if (this.closed || this.spare?.key === key) return;
    void drop(this.spare);
    this.spare = undefined;
    // Only an image already in the store: a spare never pulls.
    const image = await this.deps.images.resolve(request.config.image).catch(() => undefined);
    if (!image || this.closed || this.spare) return;
    const relay: Spare["relay"] = {};
    const made = createSandbox(request, { ...this.deps, onEvent: (e) => relay.onEvent?.(e), spare: true }).then(
      (sandbox) => (this.deps.log(`warm spare ${sandbox.id} booted for the next create like the last`), sandbox),
      (err: Error) => (this.deps.log(`warm spare not made: ${err.message}`), undefined),
    );
    this.spare = { key, digest: image.digest, made, relay };
  }
}
