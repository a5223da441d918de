// The micro-VM's side of the network seal. QEMU must not live in the host's network namespace:
// a QEMU taken over through a device bug would otherwise open sockets anywhere the host can,
// past the seal (which filters only the VM's link). So each VM gets a netns of its own, like a
// gVisor sandbox (../gvisor/netns.ts): a veth pair whose host end is addressed and filtered exactly
// like gVisor's (../host-end.ts, src/engine/net/firewall.ts), and inside the netns a bridge that
// joins the veth's other end to a tap QEMU attaches to by name. The netns holds nothing else and
// no address: QEMU, jailed into it (jail.ts), can reach nothing but the VM's wire. The seal's
// release deletes the netns, which takes the veth, bridge and tap with it.
import { run } from "../../host-commands.js";
import type { HostLink } from "../backend.js";
import { createLinkNetns } from "../host-end.js";

/** Names inside the VM's own netns: private to it, so fixed. */
export const VM_TAP = "tap0";
const VM_BRIDGE = "br0";

/** `owner`: the unprivileged user QEMU runs as, which may then attach to the tap. */
export async function createVmLink(l: HostLink, owner: { uid: number; gid: number }): Promise<void> {
  await createLinkNetns(l);
  await run("ip", ["-n", l.netns, "-batch", "-"], [
    `link add ${VM_BRIDGE} type bridge`,
    `tuntap add dev ${VM_TAP} mode tap user ${owner.uid} group ${owner.gid}`,
    // The bridge takes the smallest MTU of its ports: the tap must match the veth.
    `link set ${VM_TAP} mtu ${l.mtu}`,
    `link set ${l.guestInterface} master ${VM_BRIDGE}`,
    `link set ${VM_TAP} master ${VM_BRIDGE}`,
    `link set ${l.guestInterface} up`,
    `link set ${VM_TAP} up`,
    `link set ${VM_BRIDGE} up`,
  ].join("\n") + "\n");
}
