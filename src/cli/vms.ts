// list / get / kill / rm / prune: the sandbox records of the state store (protocol spec 3).
import type { Command } from "commander";
import { reclaimDeadLinks } from "../engine/net/link-allocation.js";
import { collectGarbage, reclaimVm } from "../engine/sandbox/gc.js";
import { listVms, ownerAlive, readVm, removeVmDir, requestStop, type VmRecord } from "../engine/sandbox/state.js";
import { setTimeout as sleep } from "node:timers/promises";
import { printTable } from "./table.js";

async function mustFind(id: string): Promise<VmRecord> {
  const vm = await readVm(id);
  if (!vm) throw new Error(`VM ${id} not found`);
  return vm;
}

/** How long `kill` waits for the sandbox to be seen stopped before it says it only asked. */
const KILL_CONFIRM_MS = 15_000;

async function stoppedWithin(vm: VmRecord, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    const now = await readVm(vm.id);
    if (!now || now.status !== "running" || !(await ownerAlive(now))) return true;
    if (Date.now() >= deadline) return false;
    await sleep(100);
  }
}

function localTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "-";
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/**
 * Removes a record after reclaiming anything its sandbox left on the host; a "running" one is
 * refused unless its owner is dead (then it crashed).
 */
async function removeOne(id: string): Promise<void> {
  const gc = await reclaimVm(await mustFind(id));
  if (gc.skipped === "running") throw new Error(`cannot remove running VM ${id}, kill it first`);
  await removeVmDir(id);
}

/**
 * A resident engine's running warm spare is nobody's sandbox yet (docs/resident-engine.md): `list`
 * and `kill --all` leave it out. One whose engine died shows, as crashed, for gc and rm.
 */
function hiddenSpare(vm: VmRecord): boolean {
  return vm.spare && vm.status === "running";
}

export function registerVmCommands(program: Command): void {
  program
    .command("list")
    .alias("ls")
    .description("list sandboxes")
    .option("--running", "only running sandboxes")
    .option("--json", "print JSON")
    .action(async (opts: { running?: boolean; json?: boolean }) => {
      const vms = (await listVms()).filter((v) => !hiddenSpare(v) && (!opts.running || v.status === "running"));
      if (opts.json) {
        console.log(JSON.stringify(vms.map((v) => ({ id: v.id, status: v.status, image: v.image, created_at: v.createdAt, pid: v.pid })), null, 2));
        return;
      }
      printTable(["ID", "STATUS", "IMAGE", "CREATED", "PID"],
        vms.map((v) => [v.id, v.status, v.image, localTime(v.createdAt), v.pid ? String(v.pid) : "-"]));
    });

  program
    .command("get")
    .description("print one sandbox's record as JSON")
    .argument("<id>", "sandbox id (vm-xxxxxxxx)")
    .action(async (id: string) => {
      const vm = await mustFind(id);
      const out: Record<string, unknown> = { id: vm.id, pid: vm.pid, status: vm.status, image: vm.image, created_at: vm.createdAt };
      if (vm.config) out.config = vm.config;
      console.log(JSON.stringify(out, null, 2));
    });

  program
    .command("kill")
    .description("stop a running sandbox (signals its owning engine process)")
    .argument("[id]", "sandbox id")
    .option("--all", "every running sandbox")
    .action(async (id: string | undefined, opts: { all?: boolean }) => {
      // Only ever signal the engine that owns the sandbox, never a process that reused its pid.
      // "Killed" only once the record says so: the owner stops it asynchronously (and a
      // resident engine handles the request on its own time).
      const kill = async (vm: VmRecord) => {
        if (vm.status !== "running" || !(await ownerAlive(vm))) throw new Error(`VM ${vm.id} is not running`);
        await requestStop(vm);
        if (await stoppedWithin(vm, KILL_CONFIRM_MS)) console.log(`Killed ${vm.id}`);
        else console.log(`Asked the engine to stop ${vm.id}; it was still running after ${KILL_CONFIRM_MS / 1000} s`);
      };
      if (opts.all) {
        const running = (await listVms()).filter((v) => v.status === "running" && !hiddenSpare(v));
        await Promise.all(running.map((vm) => kill(vm).catch((err: Error) => {
          process.stderr.write(`Failed to kill ${vm.id}: ${err.message}\n`);
        })));
        return;
      }
      if (!id) throw new Error("VM ID required (or use --all)");
      await kill(await mustFind(id));
    });

  program
    .command("rm")
    .alias("remove")
    .description("remove a stopped sandbox's state")
    .argument("[id]", "sandbox id")
    .option("--stopped", "every sandbox that is not running")
    .action(async (id: string | undefined, opts: { stopped?: boolean }) => {
      if (opts.stopped) {
        for (const vm of (await listVms()).filter((v) => v.status !== "running")) {
          try { await removeOne(vm.id); console.log(`Removed ${vm.id}`); } catch (err) { process.stderr.write(`Failed to remove ${vm.id}: ${(err as Error).message}\n`); }
        }
        return;
      }
      if (!id) throw new Error("VM ID required (or use --stopped)");
      await removeOne(id);
      console.log(`Removed ${id}`);
    });

  program
    .command("gc")
    .description("reclaim host resources (runsc state, processes, netns, veth, nft table, subnet) left by sandboxes whose engine died")
    .argument("[id]", "only this sandbox")
    .option("--json", "print JSON")
    .action(async (id: string | undefined, opts: { json?: boolean }) => {
      // Networks are machine-wide (any engine's, any home's): every dead engine's are freed.
      const networks = await reclaimDeadLinks();
      const results = await collectGarbage(id);
      if (opts.json) {
        console.log(JSON.stringify({ networks, vms: results }, null, 2));
        return;
      }
      for (const n of networks) console.log(`Freed network of ${n}`);
      for (const r of results) {
        console.log(r.skipped ? `${r.id}: skipped (${r.skipped})` : r.cleaned.length ? `${r.id}: cleaned ${r.cleaned.join(", ")}` : `${r.id}: no resources to clean`);
      }
      console.log(`Reconciled ${results.length} VMs`);
    });

  program
    .command("prune")
    .description("remove every stopped or crashed sandbox's state")
    .action(async () => {
      const gone = (await listVms()).filter((v) => v.status !== "running");
      for (const vm of gone) {
        await reclaimVm(vm);
        await removeVmDir(vm.id);
        console.log(`Pruned ${vm.id}`);
      }
      console.log(`Pruned ${gone.length} VMs`);
    });
}
