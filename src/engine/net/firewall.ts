// The nftables table on the host end of a sandbox's link. The guest may reach only the engine's
// DNS and proxy on the host's link address; synthetic addresses (what our DNS hands out) on
// ports 80/443 are DNAT'ed to the proxy, their other TCP ports to the port sniffer (which finds
// the dialled port in conntrack), and so is every TCP port of an IPv4 address allowed_hosts
// names literally (the sniffer tells TLS and HTTP from the rest on 80/443 too); any DNS query
// goes to the engine's DNS; nothing is forwarded.
// It must be on the host side: gVisor's netstack bypasses nftables inside the sandbox's netns.
// The input chain also bounds what the sandbox can put in the host's conntrack table (which all
// of the host shares): new TCP connections and UDP flows per second, and how many it may have
// tracked at once (connection-limits.ts). Refused with a reset or an ICMP error, so a guest's
// client fails at once instead of retrying into the limit; a refused packet's entry is never
// confirmed into the table.
import { run, runQuietly } from "../host-commands.js";
import type { ConnectionLimits } from "./connection-limits.js";
import { SYNTHETIC_CIDR } from "./dns-server.js";

export interface FirewallSpec {
  table: string;
  hostInterface: string;
  hostIp: string;
  /** Where the engine listens on hostIp: ephemeral ports, so nothing else on the host can collide. */
  ports: { http: number; https: number; other: number; dns: number };
  limits: ConnectionLimits;
  /** IPv4 addresses the guest may dial directly (allowed_hosts' literals). */
  literals: string[];
}

/** The set of allowed IPv4 literals (after the synthetic range's rules: an address there stays the name it was handed out for). */
const LITERALS_SET = "literals";

export function rules(f: FirewallSpec): string {
  const i = `iifname "${f.hostInterface}"`;
  const { http, https, other, dns } = f.ports;
  const rate = `limit rate over ${f.limits.perSecond}/second burst ${2 * f.limits.perSecond} packets`;
  // Twice the engine's own limit: the engine refuses (and reports) first; this also bounds what
  // it no longer holds (connections it closed that the guest keeps half-open) or has yet to accept.
  const tracked = `ct count over ${2 * f.limits.open}`;
  const literals = f.literals.length ? `\n    elements = { ${f.literals.join(", ")} }` : "";
  return `table inet ${f.table} {
  set ${LITERALS_SET} {
    type ipv4_addr;${literals}
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ${i} ip daddr ${SYNTHETIC_CIDR} tcp dport 80 dnat ip to ${f.hostIp}:${http}
    ${i} ip daddr ${SYNTHETIC_CIDR} tcp dport 443 dnat ip to ${f.hostIp}:${https}
    ${i} ip daddr ${SYNTHETIC_CIDR} meta l4proto tcp dnat ip to ${f.hostIp}:${other}
    ${i} udp dport 53 dnat ip to ${f.hostIp}:${dns}
    ${i} ip daddr @${LITERALS_SET} meta l4proto tcp dnat ip to ${f.hostIp}:${other}
  }
  chain input {
    type filter hook input priority filter - 10; policy accept;
    ${i} meta l4proto tcp ct state new ${rate} reject with tcp reset
    ${i} meta l4proto udp ct state new ${rate} reject
    ${i} meta l4proto tcp ct state new ${tracked} reject with tcp reset
    ${i} meta l4proto udp ct state new ${tracked} reject
    ${i} ip daddr ${f.hostIp} tcp dport { ${http}, ${https}, ${other} } accept
    ${i} ip daddr ${f.hostIp} udp dport ${dns} accept
    ${i} drop
  }
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    ${i} drop
    oifname "${f.hostInterface}" drop
  }
}
`;
}

export async function installFirewall(f: FirewallSpec): Promise<void> {
  await runQuietly("nft", ["delete", "table", "inet", f.table]);
  await run("nft", ["-f", "-"], rules(f));
}

/** Replaces the allowed IPv4 literals at once (one nft transaction), when the allow-list changes. */
export async function setLiteralAddresses(table: string, literals: readonly string[]): Promise<void> {
  const add = literals.length ? `add element inet ${table} ${LITERALS_SET} { ${literals.join(", ")} }\n` : "";
  await run("nft", ["-f", "-"], `flush set inet ${table} ${LITERALS_SET}\n${add}`);
}
