// Where a DNAT'ed connection was really headed. The firewall sends every port other than 80/443
// of the synthetic range to one listener; the address and port the guest dialled survive only
// in the kernel's connection tracking. Node cannot call getsockopt(SO_ORIGINAL_DST), so the
// entry is read from /proc/net/nf_conntrack, keyed by the reply direction, which is exactly
// this accepted socket's four-tuple.
import { readFile } from "node:fs/promises";
import type { Socket } from "node:net";

export const CONNTRACK_TABLE = "/proc/net/nf_conntrack";

export interface Destination {
  address: string;
  port: number;
}

const ENTRY = /^ipv4\s+2\s+tcp\s+6\s.*?src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+) .*?src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)/;

/** The original destination of an accepted TCP connection; undefined when conntrack has no entry for it. */
export async function originalDestination(socket: Socket, table = CONNTRACK_TABLE): Promise<Destination | undefined> {
  const { localAddress, localPort, remoteAddress, remotePort } = socket;
  if (!localAddress || !remoteAddress || !localPort || !remotePort) return undefined;
  return findOriginal(await readFile(table, "utf8"), { localAddress, localPort, remoteAddress, remotePort });
}

/** The parsing half of originalDestination, on the table's text. */
export function findOriginal(
  table: string, s: { localAddress: string; localPort: number; remoteAddress: string; remotePort: number },
): Destination | undefined {
  for (const line of table.split("\n")) {
    const m = ENTRY.exec(line);
    if (!m) continue;
    // Reply tuple: from us (local) back to the guest (remote).
    if (m[5] !== s.localAddress || m[6] !== s.remoteAddress || Number(m[7]) !== s.localPort || Number(m[8]) !== s.remotePort) continue;
    // Original tuple: from the guest to what it dialled.
    if (m[1] !== s.remoteAddress || Number(m[3]) !== s.remotePort) continue;
    return { address: m[2]!, port: Number(m[4]) };
  }
  return undefined;
}
