// Reclaims what sandboxes whose owning engine died left behind (`matchlock gc`, and before
// `rm`/`prune`). A running sandbox with a live owner is never touched.
import { removeSnapshotDisk } from "../vfs/snapshot-disk.js";
import { driversFor } from "../backends/registry.js";
import { paths } from "../paths.js";
import { listVms, readVm, reconcile, type VmRecord } from "./state.js";

export interface GcResult {
  id: string;
  cleaned: string[];
  skipped?: string;
}

export async function reclaimVm(vm: VmRecord): Promise<GcResult> {
  const current = await reconcile(vm);
  if (current.status === "running") return { id: vm.id, cleaned: [], skipped: "running" };
  const cleaned: string[] = [];
  // Through the driver that made it, as its record says (every driver for a record without one).
  for (const driver of driversFor(vm.config?.backend)) cleaned.push(...(await driver.reclaim(vm.id)));
  if (await removeSnapshotDisk(paths.vm(vm.id))) cleaned.push("overlay snapshots");
  return { id: vm.id, cleaned };
}

/** Every sandbox, or just `id`. */
export async function collectGarbage(id?: string): Promise<GcResult[]> {
  const vms = id ? [await readVm(id)].filter((v): v is VmRecord => v !== undefined) : await listVms();
  if (id && vms.length === 0) throw new Error(`VM ${id} not found`);
  const results: GcResult[] = [];
  for (const vm of vms) results.push(await reclaimVm(vm));
  return results;
}
