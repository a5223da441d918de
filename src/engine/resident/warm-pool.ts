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
// sandbox closes, so that it never competes with a client's own create or first commands, and
// let go after SPARE_MAX_AGE_MS untaken: an idle sandbox's memory is not kept for nobody.
import type { NetworkEventSink } from "../net/events.js";
import { createSandbox, type CreateDeps, type CreateRequest } from "../sandbox/create.js";
import type { Sandbox } from "../sandbox/sandbox.js";
import { removeVmDir, takeStopRequest, unmarkSpare } from "../sandbox/state.js";

const SPARE_MAX_AGE_MS = 5 * 60_000;

interface Spare {
  key: string;
  /** The image digest the spare booted from ("" if that is unsure): it is handed out only while the reference still names it. */
  digest: Promise<string>;
  made: Promise<Sandbox | undefined>;
  /** Aborts the boot when the spare is let go before it is up. */
  abort: AbortController;
  /** Where the spare's network events go: nowhere until a session takes it. */
  relay: { onEvent?: NetworkEventSink | undefined };
  expiry: NodeJS.Timeout;
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
  /** Spares being let go: the engine's stop waits for them, so none is cut off half-stopped. */
  private readonly dropping = new Set<Promise<void>>();

  constructor(private readonly deps: CreateDeps) {}

  /**
   * The spare, if it was made for exactly this request and is up, with the image the reference
   * names now; it is then the caller's (told its id first, like a create's record; its events go
   * to onEvent). Undefined: make one as usual (also when `signal` aborts while the spare boots).
   */
  async take(request: CreateRequest, session: { onEvent: NetworkEventSink; onRecord: (id: string) => void }, signal: AbortSignal): Promise<Sandbox | undefined> {
    const key = spareKey(request);
    const spare = this.spare;
    if (key === undefined || spare?.key !== key) return undefined;
    this.spare = undefined;
    clearTimeout(spare.expiry);
    // Still booting: no later than a boot of its own, unless the client gives up first.
    const sandbox = await Promise.race([spare.made, new Promise<undefined>((resolve) => signal.addEventListener("abort", () => resolve(undefined), { once: true }))]);
    if (!sandbox) {
      this.drop(spare);
      return undefined;
    }
    session.onRecord(sandbox.id); // from here a `matchlock kill` of this id finds the session
    const [booted, now] = await Promise.all([spare.digest, this.digestNow(request.config.image)]);
    const why = sandbox.stopped || sandbox.lost ? "it stopped" : booted !== now ? `image ${request.config.image} changed` : (await takeStopRequest(sandbox.id)) ? "matchlock kill" : undefined;
    if (why) {
      this.deps.log(`warm spare ${sandbox.id} not used: ${why}`);
      this.drop(spare);
      return undefined;
    }
    try {
      await unmarkSpare(sandbox.id);
    } catch (err) {
      this.deps.log(`warm spare ${sandbox.id} not used: ${(err as Error).message}`);
      this.drop(spare);
      return undefined;
    }
    spare.relay.onEvent = session.onEvent;
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
    this.drop(spare);
  }

  /** Stops the spare and every one still being let go (engine stop); none is made after this. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.spare) this.drop(this.spare);
    this.spare = undefined;
    while (this.dropping.size > 0) await Promise.allSettled([...this.dropping]);
  }

  /**
   * Lets a spare go (replaced, expired, killed, engine stop): its boot is aborted, or it stops,
   * and its record goes with it: it was never anybody's sandbox.
   */
  private drop(spare: Spare): void {
    clearTimeout(spare.expiry);
    spare.abort.abort();
    const done = (async () => {
      const sandbox = await spare.made;
      if (!sandbox) return;
      await sandbox.close();
      await removeVmDir(sandbox.id);
    })().catch((err: Error) => this.deps.log(`letting the warm spare go failed: ${err.message}`));
    this.dropping.add(done);
    void done.finally(() => this.dropping.delete(done));
  }

  private refill(key: string, request: CreateRequest): void {
    if (this.closed || this.spare?.key === key) return;
    if (this.spare) this.drop(this.spare);
    const relay: Spare["relay"] = {};
    const abort = new AbortController();
    // Only an image already in the store: a spare never pulls. Resolved before and after the
    // boot: a digest that changed in between is unsure, and such a spare is never handed out.
    const before = this.digestNow(request.config.image);
    const made = before.then(async (digest) => {
      if (!digest) throw new Error(`image ${request.config.image} is not in the store (a spare never pulls)`);
      const sandbox = await createSandbox(request, { ...this.deps, onEvent: (e) => relay.onEvent?.(e), spare: true }, abort.signal);
      this.deps.log(`warm spare ${sandbox.id} booted for the next create like the last`);
      return sandbox;
    }).catch((err: Error) => (this.deps.log(`warm spare not made: ${err.message}`), undefined));
    const digest = made.then(async () => {
      const [was, is] = [await before, await this.digestNow(request.config.image)];
      return was !== undefined && was === is ? was : "";
    });
    const spare: Spare = { key, digest, made, abort, relay, expiry: setTimeout(() => this.expire(spare), SPARE_MAX_AGE_MS) };
    spare.expiry.unref();
    this.spare = spare;
  }

  /** The digest the reference names in the store now (undefined: not there, or the store could not say). */
  private digestNow(ref: string): Promise<string | undefined> {
    return this.deps.images.resolve(ref).then((image) => image?.digest, () => undefined);
  }

  private expire(spare: Spare): void {
    if (this.spare !== spare) return;
    this.spare = undefined;
    this.deps.log(`warm spare let go: not taken within ${SPARE_MAX_AGE_MS / 60_000} minutes`);
    this.drop(spare);
  }
}
