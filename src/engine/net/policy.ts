// Who the sandbox may talk to: allowed_hosts globs, private-address blocking and secret
// scoping. Semantics of the protocol spec (4.2, 4.3) with our deliberate improvements:
// matching is case-insensitive and ignores a trailing dot; an empty allowlist with
// interception on denies everything; the private ranges are wider (see private-ranges.ts).
import { BlockReason } from "./events.js";
import { isPrivateAddress } from "./private-ranges.js";

export interface SecretRule {
  /** Env var name the guest sees. */
  name: string;
  placeholder: string;
  /** The real value: lives only in engine memory, never in the sandbox or on disk. */
  value: string;
  /** Patterns of hosts the value may be sent to; empty means any allowed host (spec 4.3). */
  hosts: string[];
  /** The value may also go into plain HTTP requests (an extension; by default only into TLS). */
  allowCleartext: boolean;
}

/** How a request travels to its host: TLS, or readable by anyone on the way (plain HTTP). */
export type Transport = "tls" | "cleartext";

/** What the secrets mean for one request to one host. */
export interface SecretScope {
  /** Substituted for their placeholders in this request. */
  usable: SecretRule[];
  /** A placeholder of one of these blocks the request, for `reason`. */
  forbidden: Array<{ secret: SecretRule; reason: string }>;
  /** Whose real values are turned back into placeholders in whatever the host answers. */
  redacted: SecretRule[];
}

export interface NetworkPolicyInput {
  allowedHosts: string[];
  blockPrivateIps: boolean;
  secrets: SecretRule[];
}

export type SecretDecision =
  | { ok: true; apply: (text: string) => string; used: SecretRule[]; scope: SecretScope }
  | { ok: false; secret: string; reason: string };

/** What a runtime change of the allow-list did (spec 5.5). */
export interface AllowListChange {
  /** The hosts this change added or removed, as given (trimmed). */
  changed: string[];
  /** The allow-list after it, as given: a secret's hosts are allowed besides these. */
  allowList: string[];
}

export class NetworkPolicy {
  /** Every allowed pattern, normalised: the allow-list's and the secrets' hosts. */
  private patterns: string[] = [];
  /** The allow-list as given (trimmed), changed at runtime by allow_list_add/delete. */
  private listed: string[];
  readonly blockPrivateIps: boolean;
  readonly secrets: SecretRule[];

  constructor(input: NetworkPolicyInput) {
    this.listed = unique(input.allowedHosts.map((h) => h.trim()).filter(Boolean));
    this.blockPrivateIps = input.blockPrivateIps;
    this.secrets = input.secrets;
    this.rebuild();
  }

  get allowedHosts(): readonly string[] {
    return this.patterns;
  }

  /** The allow-list as given at create and changed since (without the secrets' hosts). */
  get allowList(): readonly string[] {
    return this.listed;
  }

  /** Appends the hosts not listed yet; new DNS answers, connections and requests see them at once. */
  addAllowedHosts(hosts: readonly string[]): AllowListChange {
    const known = new Set(this.listed.map(normalizeHost));
    const added: string[] = [];
    for (const h of hosts.map((x) => x.trim())) {
      if (!h || known.has(normalizeHost(h))) continue;
      known.add(normalizeHost(h));
      added.push(h);
    }
    this.listed = [...this.listed, ...added];
    this.rebuild();
    return { changed: added, allowList: this.listed };
  }

  /** Removes the listed hosts among these (compared as matching compares: case and trailing dot aside). */
  removeAllowedHosts(hosts: readonly string[]): AllowListChange {
    const gone = new Set(hosts.map(normalizeHost).filter(Boolean));
    const removed = this.listed.filter((l) => gone.has(normalizeHost(l)));
    this.listed = this.listed.filter((l) => !gone.has(normalizeHost(l)));
    this.rebuild();
    return { changed: removed, allowList: this.listed };
  }

  private rebuild(): void {
    const hosts = new Set(this.listed.map(normalizeHost));
    // Auto-allow: a secret's hosts join the allowlist (spec 4.3).
    for (const s of this.secrets) for (const h of s.hosts) hosts.add(normalizeHost(h));
    hosts.delete("");
    this.patterns = [...hosts];
  }

  /** Is a host name (or IP literal) in the allowlist? Private-address checks happen at connect time. */
  isHostAllowed(host: string): boolean {
    const h = normalizeHost(host);
    if (!h) return false;
    if (this.blockPrivateIps && isPrivateAddress(h)) return false;
    return this.patterns.some((p) => matchGlob(p, h));
  }

  /** May a connection go to this resolved address? */
  isAddressAllowed(ip: string): boolean {
    return !(this.blockPrivateIps && isPrivateAddress(ip));
  }

  /**
   * The secrets for a request to `host`: those bound to it (hosts empty or matching) are usable,
   * unless the request goes in cleartext and the secret was not allowed that; every other
   * secret is forbidden. Whatever the request carried, every secret bound to the host is
   * redacted from its answers: the host may hold a value stored there by an earlier request.
   */
  secretScope(host: string, transport: Transport): SecretScope {
    const bound = new Set(this.boundTo(host));
    const scope: SecretScope = { usable: [], forbidden: [], redacted: [...bound] };
    for (const s of this.secrets) {
      if (!bound.has(s)) scope.forbidden.push({ secret: s, reason: BlockReason.SECRET });
      else if (transport === "cleartext" && !s.allowCleartext) scope.forbidden.push({ secret: s, reason: BlockReason.CLEARTEXT });
      else scope.usable.push(s);
    }
    return scope;
  }

  /** The secrets that may go to `host` (hosts empty or matching): what it answers is scanned for their values. */
  boundTo(host: string): SecretRule[] {
    const h = normalizeHost(host);
    return this.secrets.filter((s) => s.hosts.length === 0 || s.hosts.some((p) => matchGlob(normalizeHost(p), h)));
  }

  /**
   * Checks every secret against a request to `host` whose header values and URL are `texts`.
   * A placeholder of a forbidden secret anywhere in them blocks the whole request.
   */
  secretsFor(host: string, transport: Transport, texts: string[]): SecretDecision {
    const scope = this.secretScope(host, transport);
    const { usable, forbidden } = scope;
    for (const { secret, reason } of forbidden) if (texts.some((t) => t.includes(secret.placeholder))) return { ok: false, secret: secret.name, reason };
    return {
      ok: true,
      used: usable.filter((s) => texts.some((t) => t.includes(s.placeholder))),
      scope,
      apply: (text) => usable.reduce((acc, s) => (acc.includes(s.placeholder) ? acc.split(s.placeholder).join(s.value) : acc), text),
    };
  }

  /** The name of a secret whose real value `text` holds, if any. */
  secretIn(text: string): string | undefined {
    return this.secrets.find((s) => s.value && text.includes(s.value))?.name;
  }

  /** `text` with every secret's real value turned into its placeholder (for events and logs). */
  redactValues(text: string): string {
    return this.secrets.reduce((acc, s) => (s.value && acc.includes(s.value) ? acc.split(s.value).join(s.placeholder) : acc), text);
  }
}

function unique(items: string[]): string[] {
  return [...new Set(items)];
}

/** Lower case, no trailing dot, no port; IPv6 literals lose their brackets. */
export function normalizeHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith("[")) {
    const end = h.indexOf("]");
    return end > 0 ? h.slice(1, end) : h;
  }
  const colon = h.indexOf(":");
  // One colon is host:port; more than one is a bare IPv6 literal.
  if (colon >= 0 && h.indexOf(":", colon + 1) < 0) h = h.slice(0, colon);
  return h.endsWith(".") ? h.slice(0, -1) : h;
}

/** The spec's matchGlob (4.2), applied to already-normalised pattern and host. */
export function matchGlob(pattern: string, host: string): boolean {
  if (pattern === "*") return true;
  if (!pattern.includes("*")) return pattern === host;
  const stars = pattern.split("*").length - 1;
  if (stars === 1 && pattern.startsWith("*.")) return host.endsWith(pattern.slice(1));
  if (stars === 1 && pattern.endsWith(".*")) return host.startsWith(pattern.slice(0, -1));
  const pieces = pattern.split("*");
  const first = pieces[0]!;
  const last = pieces[pieces.length - 1]!;
  if (!host.startsWith(first)) return false;
  let rest = host.slice(first.length);
  if (last) {
    if (!rest.endsWith(last)) return false;
    rest = rest.slice(0, rest.length - last.length);
  }
  for (const middle of pieces.slice(1, -1)) {
    if (!middle) continue;
    const at = rest.indexOf(middle);
    if (at < 0) return false;
    rest = rest.slice(at + middle.length);
  }
  return true;
}
