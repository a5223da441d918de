// Machine-wide allocation of each sandbox's host<->guest link: a /30 from 10.200.0.0/16 and the
// names of its netns, host interface and nft table. One file per allocation under
// /run/matchlock/net (O_EXCL create, so concurrent engines never share one), naming the owning
// engine process; allocations whose owner died are torn down and freed by the next engine.
import { mkdir, open, readFile, readdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import { runQuietly } from "../host-commands.js";
import { processStart, sameProcessAlive } from "../process-identity.js";
import { settings } from "../../settings/settings.js";

export const LINK_PREFIX_LENGTH = 30;
/** Where every sandbox's link lives, on the host. */
export const LINK_CIDR = "10.200.0.0/16";
const SLOTS = 1 << 14; // /30s in LINK_CIDR

export interface LinkAllocation {
  slot: number;
  vmId: string;
  ownerPid: number;
  ownerStart: string;
  hostIp: string;
  guestIp: string;
  /** Network namespace (gVisor) the guest end lives in; removed on release if it exists. */
  netns: string;
  hostInterface: string;
  guestInterface: string;
  nftTable: string;
}

export function allocationDir(): string {
  return settings.netState.read();
}

export async function allocateLink(vmId: string): Promise<LinkAllocation> {
  await reclaimDeadLinks();
  const dir = allocationDir();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const hex = vmId.replace(/^vm-/, "");
  const start = Math.floor(Math.random() * SLOTS);
  for (let i = 0; i < SLOTS; i++) {
    const slot = (start + i) % SLOTS;
    const base = (10 << 24) | (200 << 16) | (slot << 2);
    const alloc: LinkAllocation = {
      slot, vmId,
      ownerPid: process.pid,
      ownerStart: await processStart(process.pid) ?? "",
      hostIp: ipv4(base + 1),
      guestIp: ipv4(base + 2),
      netns: `matchlock-${hex}`,
      hostInterface: `mlh${hex}`,
      guestInterface: `mlg${hex}`,
      nftTable: `matchlock_${hex}`,
    };
    try {
      const f = await open(join(dir, String(slot)), "wx", 0o600);
      await f.writeFile(JSON.stringify(alloc));
      await f.close();
      return alloc;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
  }
  throw new Error("no free sandbox network slot (all 16384 in use)");
}

/** Removes everything the allocation may have created on the host, then frees the slot. */
export async function releaseLink(alloc: LinkAllocation): Promise<void> {
  await runQuietly("nft", ["delete", "table", "inet", alloc.nftTable]);
  await runQuietly("ip", ["link", "del", alloc.hostInterface]);
  await runQuietly("ip", ["netns", "del", alloc.netns]);
  await unlink(join(allocationDir(), String(alloc.slot))).catch(() => {});
}

/** Frees the links of engines that died without cleaning up (SIGKILL, crash). Returns their VM ids. */
export async function reclaimDeadLinks(): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(allocationDir());
  } catch {
    return [];
  }
  const freed: string[] = [];
  for (const name of names) {
    let alloc: LinkAllocation;
    try {
      alloc = JSON.parse(await readFile(join(allocationDir(), name), "utf8")) as LinkAllocation;
    } catch {
      continue; // being written right now, or not ours
    }
    if (await ownerAlive(alloc)) continue;
    await releaseLink(alloc);
    freed.push(alloc.vmId);
  }
  return freed;
}

async function ownerAlive(a: LinkAllocation): Promise<boolean> {
  return sameProcessAlive(a.ownerPid, a.ownerStart); // a reused pid has another start time
}

function ipv4(v: number): string {
  return [v >>> 24, (v >> 16) & 255, (v >> 8) & 255, v & 255].join(".");
}
