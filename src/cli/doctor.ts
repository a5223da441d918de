// `matchlock doctor`: which isolation engines can run here, which one `auto` picks, and for
// the micro-VM whether it gets KVM or software emulation (TCG), each with the reason.
import type { Command } from "commander";
import { GvisorBackend } from "../engine/backends/gvisor/runsc.js";
import { MicrovmBackend } from "../engine/backends/microvm/microvm.js";
import { availability, chooseBackend } from "../engine/backends/select.js";

export interface DoctorReport {
  backends: Array<{ name: string; available: boolean; problem?: string; detail?: string }>;
  selected: { name: string; reason: string } | { error: string };
}

export async function doctorReport(): Promise<DoctorReport> {
  const microvm = new MicrovmBackend();
  const accel = await microvm.accel();
  const backends: DoctorReport["backends"] = [];
  for (const [backend, detail] of [[microvm, accel.reason], [new GvisorBackend(), undefined]] as const) {
    const problem = await availability(backend);
    backends.push({ name: backend.name, available: problem === undefined, ...(problem ? { problem } : {}), ...(detail ? { detail } : {}) });
  }
  let selected: DoctorReport["selected"];
  try {
    const choice = await chooseBackend();
    selected = { name: choice.backend.name, reason: choice.reason };
  } catch (err) {
    selected = { error: (err as Error).message };
  }
  return { backends, selected };
}

export function registerDoctorCommand(program: Command): void {
  program
    .command("doctor")
    .description("say which isolation engines work here (gVisor, micro-VM with KVM or TCG) and why")
    .option("--json", "print the report as JSON")
    .action(async (opts: { json?: boolean }) => {
      const report = await doctorReport();
      if (opts.json) {
        console.log(JSON.stringify(report, null, 2));
        return;
      }
      for (const b of report.backends) {
        console.log(`${b.name}: ${b.available ? "available" : "NOT available"}`);
        if (b.detail) console.log(`  accelerator: ${b.detail}`);
        if (b.problem) console.log(`  ${b.problem}`);
      }
      if ("error" in report.selected) console.log(`selected: none (${report.selected.error})`);
      else console.log(`selected: ${report.selected.name} (${report.selected.reason})`);
    });
}
