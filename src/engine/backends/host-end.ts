// The host end of a sandbox's link, whatever it is (gVisor's veth end, a micro-VM's tap): the
// engine's address on it and the link up. The seal's DNS and proxy then listen on that address
// and its firewall matches the interface's name, so both engines are sealed by the same rules.
import type { HostLink } from "./backend.js";

/** `ip -batch` lines that address and raise the host end of an existing link. */
export function hostEndCommands(link: HostLink): string[] {
  return [
    `addr add ${link.hostIp}/${link.prefixLength} dev ${link.hostInterface}`,
    `link set ${link.hostInterface} up`,
  ];
}
