// The host end of a sandbox's link, whatever is behind it (gVisor's netstack, a micro-VM's tap):
// a netns of the sandbox's own with a veth pair into it, the engine's address on the host end and
// the link up. The seal's DNS and proxy then listen on that address and its firewall matches the
// interface's name, so both engines are sealed by the same rules.
import { run } from "../host-commands.js";
import type { HostLink } from "./backend.js";

/** Makes the sandbox's netns and a veth pair into it, the host end addressed and up. */
export async function createLinkNetns(link: HostLink): Promise<void> {
  await run("ip", ["netns", "add", link.netns]);
  await run("ip", ["-batch", "-"], [
    `link add ${link.hostInterface} mtu ${link.mtu} type veth peer name ${link.guestInterface} mtu ${link.mtu} netns ${link.netns}`,
    `addr add ${link.hostIp}/${link.prefixLength} dev ${link.hostInterface}`,
    `link set ${link.hostInterface} up`,
  ].join("\n") + "\n");
}

export function netnsPath(link: HostLink): string {
  return `/var/run/netns/${link.netns}`;
}
