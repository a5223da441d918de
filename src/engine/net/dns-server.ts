// The sandbox's only resolver. Allowed names get a synthetic address (one per name, from a
// range that is routed to the proxy and nowhere else); every other name gets NXDOMAIN. No
// query is forwarded upstream here, so DNS labels cannot carry data out of the sandbox.
import dnsPacket from "dns-packet";
import { createSocket, type Socket } from "node:dgram";
import type { NetworkPolicy } from "./policy.js";
import { normalizeHost } from "./policy.js";

/** Addresses the DNS hands out: 10.201.0.0/16, DNAT'ed to the proxy on the host end of the link. */
export const SYNTHETIC_CIDR = "10.201.0.0/16";
const SYNTHETIC_BASE = (10 << 24) | (201 << 16);
const SYNTHETIC_SIZE = 1 << 16;
const TTL = 60;

export class SyntheticAddresses {
  private readonly byName = new Map<string, string>();
  private readonly byAddress = new Map<string, string>();

  /** The address for `name`, handing out the next free one the first time. */
  addressFor(name: string): string | undefined {
    let ip = this.byName.get(name);
    if (ip) return ip;
    const n = this.byName.size + 1; // skip .0.0
    if (n >= SYNTHETIC_SIZE - 1) return undefined;
    const v = SYNTHETIC_BASE + n;
    ip = [v >>> 24, (v >> 16) & 255, (v >> 8) & 255, v & 255].join(".");
    this.byName.set(name, ip);
    this.byAddress.set(ip, name);
    return ip;
  }

  nameFor(ip: string): string | undefined {
    return this.byAddress.get(ip);
  }
}

export class SandboxDnsServer {
  private readonly socket: Socket;

  constructor(private readonly policy: NetworkPolicy, readonly addresses: SyntheticAddresses, private readonly log: (l: string) => void) {
    this.socket = createSocket("udp4");
    this.socket.on("message", (msg, rinfo) => {
      const reply = this.answer(msg);
      if (reply) this.socket.send(reply, rinfo.port, rinfo.address);
    });
    this.socket.on("error", (err) => this.log(`dns: ${err.message}`));
  }

  /** Binds and returns the port (0 = an ephemeral one). */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.socket.once("error", reject);
      this.socket.bind(port, host, () => {
        this.socket.off("error", reject);
        resolve(this.socket.address().port);
      });
    });
  }

  close(): void {
    try { this.socket.close(); } catch { /* already closed */ }
  }

  /** The reply to one query; undefined for garbage, which is dropped. */
  answer(msg: Buffer): Buffer | undefined {
    let query: dnsPacket.Packet;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return undefined;
    }
    if (query.type !== "query" || !query.questions?.length) return undefined;
    const q = query.questions[0]!;
    const name = normalizeHost(q.name);
    const base = { id: query.id, type: "response" as const, questions: [q] };
    const flags = dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE;
    if (!this.policy.isHostAllowed(name)) {
      return dnsPacket.encode({ ...base, flags: flags | NXDOMAIN });
    }
    const answers: dnsPacket.Answer[] = [];
    if (q.type === "A" && (q.class ?? "IN") === "IN") {
      const ip = this.addresses.addressFor(name);
      if (!ip) return dnsPacket.encode({ ...base, flags: flags | SERVFAIL });
      answers.push({ type: "A", name: q.name, ttl: TTL, data: ip });
    }
    // AAAA and everything else: the name exists but has no such record (the guest has no IPv6).
    return dnsPacket.encode({ ...base, flags, answers });
  }
}

const NXDOMAIN = 3;
const SERVFAIL = 2;
