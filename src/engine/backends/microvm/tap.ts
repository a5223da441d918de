// The micro-VM's side of the network seal: a persistent tap device in the host's netns that QEMU
// attaches to by name (a virtio-net-device on the microvm machine). Its host end is addressed and
// filtered exactly like gVisor's veth end (../host-end.ts, src/engine/net/firewall.ts). Being
// persistent, it outlives a QEMU that dies; the seal's release (or the next engine's reclaim of a
// killed engine's links) deletes it.
import { run } from "../../host-commands.js";
import type { HostLink } from "../backend.js";
import { hostEndCommands } from "../host-end.js";

/** `owner`: the unprivileged user QEMU runs as, which may then attach to this tap (and no other). */
export async function createTap(l: HostLink, owner: { uid: number; gid: number }): Promise<void> {
  await run("ip", ["-batch", "-"], [`tuntap add dev ${l.hostInterface} mode tap user ${owner.uid} group ${owner.gid}`, ...hostEndCommands(l)].join("\n") + "\n");
}
