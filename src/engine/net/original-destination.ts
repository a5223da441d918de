// Where a DNAT'ed connection was really headed. The firewall sends every port other than 80/443
// of the synthetic range to one listener; the address and port the guest dialled survive only
// in the kernel's connection tracking. Node cannot call getsockopt(SO_ORIGINAL_DST) nor open a
// netlink socket, so the entry is asked of conntrack(8), filtered down to this connection: the
// reply direction is exactly the accepted socket's four-tuple, the original one starts at the
// guest's address and port. Reading the whole table (/proc/net/nf_conntrack, which grows with
// all of the host's traffic) in the engine for every connection a guest opened cost the engine
// time the guest controlled.
//
// Debian 12's conntrack (1.4.7) has the kernel dump the table and filters it itself, so that work
// is still proportional to the table, but in a separate C process, not on the engine's event
// loop; at most LOOKUPS_AT_ONCE run at a time (in turns shared fairly by sandboxes), and what the engine reads is one line. (`-G`
// would be a hash lookup, but conntrack(8) wants the original tuple for it, which is the unknown.)
import { isIPv4 } from "node:net";
import { runCommand } from "../host-commands.js";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";

export interface Destination {
  address: string;
  port: number;
}

export interface FourTuple {
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
}

export class OriginalDestinationError extends EngineError {
  readonly kind: ErrorKind = "failed";
}

/** More never comes for one entry (a line is ~250 bytes); more than this means something is wrong. */
export const MAX_OUTPUT = 4096;
export const LOOKUP_TIMEOUT_MS = 10_000;
/** conntrack processes running at once (per engine); further lookups wait their turn. */
export const LOOKUPS_AT_ONCE = 4;
/**
 * Lookups one sandbox may have waiting at most: beyond that its guest is opening connections faster
 * than they can be placed. Per sandbox, so that one guest's flood fails its own connections only.
 */
export const MAX_WAITING_PER_SANDBOX = 64;

export interface LookupOptions {
  /** The conntrack command (tests point this elsewhere). */
  command?: string;
  timeoutMs?: number;
  /** Whose lookup this is (one token per sandbox): waiting lookups are served round robin by owner. */
  owner?: object;
}

/** The conntrack(8) arguments listing only the entry of this accepted connection. */
export function conntrackArgs(s: FourTuple): string[] {
  for (const a of [s.localAddress, s.remoteAddress]) if (!isIPv4(a)) throw new OriginalDestinationError(`not an IPv4 address: ${JSON.stringify(a)}`);
  for (const p of [s.localPort, s.remotePort]) if (!Number.isInteger(p) || p < 1 || p > 65535) throw new OriginalDestinationError(`not a port: ${p}`);
  return [
    "-L", "-p", "tcp",
    "--orig-src", s.remoteAddress, "--orig-port-src", String(s.remotePort),
    "--reply-src", s.localAddress, "--reply-port-src", String(s.localPort),
    "--reply-dst", s.remoteAddress, "--reply-port-dst", String(s.remotePort),
  ];
}

// conntrack -L's line: "tcp 6 <timeout> <state> src= dst= sport= dport= [flags] src= dst= sport= dport= ...".
const ENTRY = /^tcp\s+6\s.*?src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+) .*?src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)/;

/** The original destination in conntrack's output for this connection; undefined when it lists none. */
export function parseEntry(output: string, s: FourTuple): Destination | undefined {
  const lines = output.split("\n").filter((l) => l.trim());
  if (lines.length > 1) throw new OriginalDestinationError(`conntrack listed ${lines.length} entries for one connection`);
  const m = lines[0] === undefined ? undefined : ENTRY.exec(lines[0]);
  if (!m) {
    if (lines[0] !== undefined) throw new OriginalDestinationError(`conntrack printed something unexpected: ${JSON.stringify(lines[0].slice(0, 200))}`);
    return undefined;
  }
  // conntrack filtered on these already; checked again rather than trusted.
  const reply = m[5] === s.localAddress && m[6] === s.remoteAddress && Number(m[7]) === s.localPort && Number(m[8]) === s.remotePort;
  const original = m[1] === s.remoteAddress && Number(m[3]) === s.remotePort;
  if (!reply || !original || !isIPv4(m[2]!)) throw new OriginalDestinationError(`conntrack listed another connection: ${JSON.stringify(lines[0])}`);
  return { address: m[2]!, port: Number(m[4]) };
}

/**
 * The engine-wide turns at conntrack. A resident engine serves many sandboxes, so waiting lookups
 * are kept per owner and a freed slot goes to the next owner in turn, not to the oldest lookup:
 * a guest opening thousands of connections waits behind itself, and another sandbox's lookup
 * waits for at most one turn of each owner that has some waiting.
 */
export class LookupTurns {
  private running = 0;
  /** Owners with lookups waiting, in the order they get their next turn (a Map keeps insertion order). */
  private readonly waiting = new Map<object, Array<() => void>>();

  constructor(readonly atOnce = LOOKUPS_AT_ONCE, readonly maxWaitingPerOwner = MAX_WAITING_PER_SANDBOX) {}

  async run<T>(owner: object, work: () => Promise<T>): Promise<T> {
    if (this.running >= this.atOnce) {
      const queue = this.waiting.get(owner) ?? [];
      if (queue.length >= this.maxWaitingPerOwner) {
        throw new OriginalDestinationError(`more than ${this.maxWaitingPerOwner} of this sandbox's connections are waiting for their destination`);
      }
      if (queue.length === 0) this.waiting.set(owner, queue);
      await new Promise<void>((resolve) => queue.push(resolve));
    } else {
      this.running++;
    }
    try {
      return await work();
    } finally {
      this.passOn();
    }
  }

  /** The freed slot passes straight to the first waiting lookup of the owner whose turn it is. */
  private passOn(): void {
    const next = this.waiting.entries().next();
    if (next.done) {
      this.running--;
      return;
    }
    const [owner, queue] = next.value;
    const resolve = queue.shift()!;
    // To the back of the line: every other owner with lookups waiting goes first.
    this.waiting.delete(owner);
    if (queue.length > 0) this.waiting.set(owner, queue);
    resolve();
  }
}

const turns = new LookupTurns();
/** The owner of lookups that name none (a single network, the tests). */
const NO_OWNER = {};

/** Runs conntrack, its output cut off at MAX_OUTPUT bytes and its time at timeoutMs. */
async function runConntrack(args: string[], opts: LookupOptions): Promise<string> {
  const command = opts.command ?? "conntrack";
  const timeoutMs = opts.timeoutMs ?? LOOKUP_TIMEOUT_MS;
  const r = await runCommand(command, args, { timeoutMs, maxOutputBytes: MAX_OUTPUT });
  if (r.spawnError) {
    throw new OriginalDestinationError(r.spawnError.code === "ENOENT"
      ? `${command} is not installed (Debian: apt-get install conntrack); it finds where a guest's connection to a port other than 80/443 was headed`
      : `${command} could not run: ${r.spawnError.message}`);
  }
  if (r.timedOut) throw new OriginalDestinationError(`conntrack did not answer within ${timeoutMs} ms`);
  if (r.outputTooLong) throw new OriginalDestinationError(`conntrack printed more than ${MAX_OUTPUT} bytes for one connection`);
  if (r.status !== 0) throw new OriginalDestinationError(`${command} failed (status ${r.status}): ${r.stderr.trim().split("\n").pop()?.slice(0, 300) ?? ""}`);
  return r.stdout;
}

/** The original destination of an accepted TCP connection; throws a clear error when there is none. */
export async function originalDestination(s: Partial<FourTuple>, opts: LookupOptions = {}): Promise<Destination> {
  const { localAddress, localPort, remoteAddress, remotePort } = s;
  if (!localAddress || !remoteAddress || !localPort || !remotePort) throw new OriginalDestinationError("the connection is already closed");
  const tuple = { localAddress, localPort, remoteAddress, remotePort };
  const args = conntrackArgs(tuple);
  const dest = parseEntry(await turns.run(opts.owner ?? NO_OWNER, () => runConntrack(args, opts)), tuple);
  if (!dest) throw new OriginalDestinationError(`connection tracking has no entry for ${remoteAddress}:${remotePort} -> ${localAddress}:${localPort}`);
  return dest;
}
