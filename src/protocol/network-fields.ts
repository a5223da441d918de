// Checks of create's network fields (spec 5.2) that the SDK makes before sending and the engine
// makes again on receipt: one wording for both.
import { isIP } from "node:net";

/** The link MTU without network.mtu, and the range a Linux NIC takes. */
export const DEFAULT_MTU = 1500;
export const MIN_MTU = 68;
export const MAX_MTU = 65535;

/** What sethostname takes and a resolver can look up: a DNS name of at most 64 bytes. */
const HOSTNAME = /^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$/;

/** Why an add_hosts entry is refused (upstream's rules: the host has no whitespace or ':', the ip parses), or undefined. */
export function addHostProblem(host: unknown, ip: unknown): string | undefined {
  const problem =
    typeof host !== "string" || !host.trim() ? "host is required"
    : /\s/.test(host) ? `host ${JSON.stringify(host)} must not contain whitespace`
    : host.includes(":") ? `host ${JSON.stringify(host)} must not contain ':'`
    : typeof ip !== "string" || !ip.trim() ? `ip is required for host ${host}`
    : isIP(ip.trim()) === 0 ? `ip ${JSON.stringify(ip)} of host ${host} is not an IP address`
    : undefined;
  return problem && `invalid add-host mapping: ${problem}`;
}

export function hostnameProblem(name: unknown): string | undefined {
  return typeof name === "string" && HOSTNAME.test(name)
    ? undefined
    : `invalid hostname ${JSON.stringify(name)}: 1-64 letters, digits, '-' and '.', starting with a letter or digit`;
}

export function mtuProblem(mtu: unknown): string | undefined {
  return typeof mtu === "number" && Number.isInteger(mtu) && mtu >= MIN_MTU && mtu <= MAX_MTU
    ? undefined
    : `network mtu must be an integer from ${MIN_MTU} to ${MAX_MTU}, got ${JSON.stringify(mtu)}`;
}
