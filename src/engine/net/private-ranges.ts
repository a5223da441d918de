// Address ranges that block_private_ips keeps the sandbox away from. Wider than the spec's
// list (4.2) on purpose: CGNAT, "this network", IPv6 loopback/ULA/link-local, and the
// IPv4-mapped and -compatible IPv6 forms of every IPv4 range.
import { BlockList, isIP } from "node:net";

const blocked = new BlockList();
const V4: Array<[string, number]> = [
  ["0.0.0.0", 8], ["10.0.0.0", 8], ["100.64.0.0", 10], ["127.0.0.0", 8], ["169.254.0.0", 16],
  ["172.16.0.0", 12], ["192.168.0.0", 16],
];
for (const [net, bits] of V4) blocked.addSubnet(net, bits, "ipv4");
blocked.addAddress("::", "ipv6");
blocked.addAddress("::1", "ipv6");
blocked.addSubnet("fc00::", 7, "ipv6");
blocked.addSubnet("fe80::", 10, "ipv6");

/** True for an IP literal in a blocked range; false for anything that is not an IP literal. */
export function isPrivateAddress(host: string): boolean {
  const family = isIP(host);
  if (family === 4) return blocked.check(host, "ipv4");
  if (family !== 6) return false;
  const embedded = embeddedIpv4(host);
  if (embedded && blocked.check(embedded, "ipv4")) return true;
  return blocked.check(host, "ipv6");
}

/** The IPv4 address inside ::ffff:a.b.c.d, ::a.b.c.d and their hex spellings. */
export function embeddedIpv4(v6: string): string | undefined {
  const words = expandIpv6(v6);
  if (!words) return undefined;
  const zeros = words.slice(0, 5).every((w) => w === 0);
  if (!zeros || (words[5] !== 0xffff && words[5] !== 0)) return undefined;
  if (words[5] === 0 && words[6] === 0) return undefined; // ::, ::1 are not IPv4-compatible forms
  return [words[6]! >> 8, words[6]! & 0xff, words[7]! >> 8, words[7]! & 0xff].join(".");
}

function expandIpv6(addr: string): number[] | undefined {
  let a = addr.toLowerCase();
  const zone = a.indexOf("%");
  if (zone >= 0) a = a.slice(0, zone);
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (dotted) {
    const o = dotted[1]!.split(".").map(Number);
    a = a.slice(0, -dotted[1]!.length) + `${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const [head, tail] = a.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const fill = a.includes("::") ? 8 - h.length - t.length : 0;
  const words = [...h, ...Array(fill).fill("0"), ...t].map((w) => parseInt(w, 16));
  return words.length === 8 && words.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffff) ? words : undefined;
}
