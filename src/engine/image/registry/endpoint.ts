// Where a registry named in an image ref is reached, and whether plain HTTP is acceptable there.
// Plain HTTP is refused by default (anyone on the path could swap the image); it is allowed for
// loopback registries and for hosts listed in $MATCHLOCK_INSECURE_REGISTRIES (comma-separated
// "host[:port]"), where HTTPS is still tried first, as Docker does.
import { isIP } from "node:net";
import { settings } from "../../../settings/settings.js";

/** Docker Hub's API does not live at docker.io itself. */
export function apiHost(domain: string): string {
  return domain === "docker.io" ? "registry-1.docker.io" : domain;
}

function hostname(hostPort: string): string {
  const bracketed = /^\[([^\]]+)\]/.exec(hostPort);
  if (bracketed) return bracketed[1]!;
  const colon = hostPort.lastIndexOf(":");
  return colon > 0 && isIP(hostPort) !== 6 ? hostPort.slice(0, colon) : hostPort;
}

function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  return h === "localhost" || h === "::1" || (isIP(h) === 4 && h.startsWith("127."));
}

export function allowsPlainHttp(hostPort: string): boolean {
  if (isLoopback(hostname(hostPort))) return true;
  const listed = (settings.insecureRegistries.read() ?? "").split(",").map((s) => s.trim().toLowerCase()).filter(Boolean);
  return listed.includes(hostPort.toLowerCase()) || listed.includes(hostname(hostPort).toLowerCase());
}
