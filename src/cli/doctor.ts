// `matchlock doctor`: which isolation engines can run here, which one `auto` picks, and for
// the micro-VM whether it gets KVM or software emulation (TCG), each with the reason.
import type { Command } from "commander";
import { chooseDriver, drivers } from "../engine/backends/registry.js";

export interface DoctorReport {
  backends: Array<{ name: string; description: string; available: boolean; rank: number; problem?: string; detail?: string }>;
  selected: { name: string; reason: string } | { error: string };
}

export async function doctorReport(): Promise<DoctorReport> {
  const backends: DoctorReport["backends"] = [];
  for (const driver of drivers()) {
    const { problem, rank, detail } = await driver.probe();
    backends.push({ name: driver.name, description: driver.description, available: problem === undefined, rank, ...(problem ? { problem } : {}), detail });
  }
  let selected: DoctorReport["selected"];
  try {
    const choice = await chooseDriver();
    selected = { name: choice.driver.name, reason: choice.reason };
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
        console.log(`  ${b.description}`);
        if (b.detail) console.log(`  here: ${b.detail}`);
        if (b.problem) console.log(`  ${b.problem}`);
      }
      if ("error" in report.selected) console.log(`selected: none (${report.selected.error})`);
      else console.log(`selected: ${report.selected.name} (${report.selected.reason})`);
    });
}
