// Where the proxy really connects: names are resolved on the host (never by the guest), every
// address is checked against the policy, and the connection goes to the checked address, so a
// rebinding answer cannot slip a private address in between check and connect.
import { lookup, Resolver } from "node:dns/promises";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { rootCertificates } from "node:tls";
import { BlockReason } from "./events.js";
import { isHostAddress } from "./host-addresses.js";
import type { NetworkPolicy } from "./policy.js";
import { settings } from "../../settings/settings.js";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";

/** The policy refuses every address a name resolves to; `reason` is the event's block_reason. */
export class UpstreamBlockedError extends EngineError {
  readonly kind: ErrorKind = "policy_refused";

  constructor(readonly reason: string, message: string) {
    super(message);
  }
}
export class UpstreamResolveError extends EngineError {
  readonly kind: ErrorKind = "not_found";
}

/**
 * $MATCHLOCK_TEST_HOSTS names a hosts-format file that replaces host resolution entirely
 * (names not in it do not resolve). Tests use it so no query ever leaves the machine.
 */
function testHosts(): Map<string, string[]> | undefined {
  const file = settings.testHosts.read();
  if (!file) return undefined;
  const map = new Map<string, string[]>();
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const [ip, ...names] = line.replace(/#.*/, "").trim().split(/\s+/);
    if (!ip || !isIP(ip)) continue;
    for (const n of names) map.set(n.toLowerCase(), [...(map.get(n.toLowerCase()) ?? []), ip]);
  }
  return map;
}

export async function resolveHost(name: string): Promise<string[]> {
  if (isIP(name)) return [name];
  const hosts = testHosts();
  if (hosts) {
    const found = hosts.get(name);
    if (!found) throw new UpstreamResolveError(`${name} does not resolve`);
    return found;
  }
  try {
    return (await lookup(name, { all: true })).map((a) => a.address);
  } catch (err) {
    throw new UpstreamResolveError(`${name} does not resolve: ${(err as Error).message}`);
  }
}

/**
 * Resolution for one sandbox: its create config's dns_servers when it gave some (asked
 * directly, IPv4 answers first), otherwise the host's resolver (resolveHost).
 */
export class UpstreamResolver {
  private readonly dns: Resolver | undefined;

  constructor(readonly servers: string[] = []) {
    if (!servers.length) return;
    this.dns = new Resolver({ timeout: 3000, tries: 2 });
    this.dns.setServers(servers);
  }

  async resolve(name: string): Promise<string[]> {
    if (!this.dns || isIP(name)) return resolveHost(name);
    const [v4, v6] = await Promise.allSettled([this.dns.resolve4(name), this.dns.resolve6(name)]);
    const found = [...(v4.status === "fulfilled" ? v4.value : []), ...(v6.status === "fulfilled" ? v6.value : [])];
    if (found.length) return found;
    const why = v4.status === "rejected" ? (v4.reason as Error).message : "no address";
    throw new UpstreamResolveError(`${name} does not resolve through ${this.servers.join(", ")}: ${why}`);
  }
}

const HOST_RESOLVER = new UpstreamResolver();

/**
 * The first resolved address the policy lets the sandbox reach and that is not the host's own
 * (checked now, at connect time: the host's addresses change).
 */
export async function pickAddress(policy: NetworkPolicy, name: string, resolver: UpstreamResolver = HOST_RESOLVER): Promise<string> {
  const addresses = await resolver.resolve(name);
  const allowed = addresses.filter((a) => policy.isAddressAllowed(a));
  if (!allowed.length) throw new UpstreamBlockedError(BlockReason.PRIVATE, `${name} resolves only to private addresses (${addresses.join(", ")})`);
  for (const a of allowed) if (!(await isHostAddress(a))) return a;
  throw new UpstreamBlockedError(BlockReason.HOST_ADDRESS, `${name} resolves only to addresses of the engine's own host (${allowed.join(", ")})`);
}

let roots: string[] | undefined;

/** Roots for verifying upstream servers: the system's, plus $MATCHLOCK_UPSTREAM_CA (a PEM file; for tests). */
export function upstreamRoots(): string[] {
  if (!roots) {
    const extra = settings.upstreamCa.read();
    roots = [...rootCertificates, ...(extra ? [readFileSync(extra, "utf8")] : [])];
  }
  return roots;
}
