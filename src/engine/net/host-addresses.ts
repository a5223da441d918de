// Addresses of the engine's own host (of the network namespace the engine runs in): a connection
// to one reaches the host itself, its services bound to 0.0.0.0 or ::, whatever range the address
// is in (a public address on the NIC, a global IPv6 one). Never a destination, with or without
// block_private_ips. The set changes at runtime (addresses come and go), so the kernel is asked
// at each connect: binding a socket to an address succeeds exactly when the kernel would deliver
// to it locally (an address on any interface, up or down, a `local` route, all of 127/8). Where
// the host allows binding to any address (ip_nonlocal_bind), the routing table is asked instead.
import { createSocket } from "node:dgram";
import { readFileSync } from "node:fs";
import { BlockList, isIP } from "node:net";
import { runCommand } from "../host-commands.js";
import { SYNTHETIC_CIDR } from "./dns-server.js";
import { LINK_CIDR } from "./link-allocation.js";
import { embeddedIpv4 } from "./private-ranges.js";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";

/**
 * Always the host: loopback and the unspecified address (a connect to 0.0.0.0 or :: lands on the
 * host), and the engine's own ranges: the sandboxes' links (the engine's connection to another
 * sandbox's guest address would go straight down that sandbox's link) and the synthetic addresses.
 */
const ALWAYS_LOCAL = new BlockList();
ALWAYS_LOCAL.addSubnet("127.0.0.0", 8, "ipv4");
ALWAYS_LOCAL.addSubnet("0.0.0.0", 8, "ipv4");
for (const cidr of [LINK_CIDR, SYNTHETIC_CIDR]) {
  const [net, bits] = cidr.split("/") as [string, string];
  ALWAYS_LOCAL.addSubnet(net, Number(bits), "ipv4");
}
ALWAYS_LOCAL.addAddress("::1", "ipv6");
ALWAYS_LOCAL.addAddress("::", "ipv6");

export class HostAddressCheckError extends EngineError {
  readonly kind: ErrorKind = "failed";
}

/** Is `ip` (an IP literal) an address of this host right now? Throws when the kernel cannot tell. */
export async function isHostAddress(ip: string): Promise<boolean> {
  // An IPv4-mapped address is connected to over IPv4: check the IPv4 address.
  const address = (isIP(ip) === 6 && embeddedIpv4(ip)) || ip;
  const family = isIP(address);
  if (family !== 4 && family !== 6) throw new HostAddressCheckError(`not an IP address: ${JSON.stringify(ip)}`);
  if (ALWAYS_LOCAL.check(address.replace(/%.*$/, ""), family === 4 ? "ipv4" : "ipv6")) return true;
  return anyAddressBinds(family) ? routesLocally(address) : bindsLocally(address, family);
}

function bindsLocally(address: string, family: 4 | 6): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = createSocket({ type: family === 4 ? "udp4" : "udp6" });
    socket.once("error", (err: NodeJS.ErrnoException) => {
      socket.close();
      if (err.code === "EADDRNOTAVAIL") resolve(false);
      else reject(new HostAddressCheckError(`cannot tell whether ${address} is an address of this host: ${err.message}`));
    });
    socket.bind({ address, port: 0, exclusive: true }, () => {
      socket.close();
      resolve(true);
    });
  });
}

/**
 * net.ipv4/ipv6.ip_nonlocal_bind: binding then succeeds for any address and tells nothing. Read
 * synchronously: a procfs read of a few bytes is ~50 us, the async one went through the thread
 * pool four times (~2 ms on a loaded host), on every upstream connection.
 */
function anyAddressBinds(family: 4 | 6): boolean {
  try {
    return readFileSync(`/proc/sys/net/ipv${family}/ip_nonlocal_bind`, "utf8").trim() !== "0";
  } catch {
    return false; // no such sysctl: binding is the kernel's plain answer
  }
}

async function routesLocally(address: string): Promise<boolean> {
  const r = await runCommand("ip", ["route", "get", address], { timeoutMs: 10_000, maxOutputBytes: 4096 });
  if (r.spawnError || r.timedOut || r.outputTooLong) {
    const why = r.spawnError ? `ip could not run: ${r.spawnError.message} (install iproute2)` : "ip route get did not answer properly";
    throw new HostAddressCheckError(`cannot tell whether ${address} is an address of this host: ${why}`);
  }
  // No route at all (unreachable): nothing delivers it locally, and a connect to it fails anyway.
  return r.status === 0 && /^local\s/.test(r.stdout);
}
