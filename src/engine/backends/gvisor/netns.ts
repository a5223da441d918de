// gVisor's side of the network seal: a fresh netns per sandbox (runsc takes over the veth it
// finds there and strips it from the kernel, so netns and link cannot be shared), a veth pair
// between it and the host (gVisor bug #10704's workaround is in private-mounts.ts).
import { run } from "../../host-commands.js";
import type { HostLink } from "../backend.js";
import { createLinkNetns } from "../host-end.js";

export async function createNetns(l: HostLink): Promise<void> {
  await createLinkNetns(l);
  await run("ip", ["-n", l.netns, "-batch", "-"], [
    `addr add ${l.guestIp}/${l.prefixLength} dev ${l.guestInterface}`,
    `link set lo up`,
    `link set ${l.guestInterface} up`,
    `route add default via ${l.hostIp} dev ${l.guestInterface}`,
  ].join("\n") + "\n");
}
