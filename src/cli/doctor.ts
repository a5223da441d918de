// `matchlock doctor`: which isolation engines can run here, which one `auto` picks, and for
// the micro-VM whether it gets KVM or software emulation (TCG), each with the reason. Exits
// non-zero when the engine that would be used cannot run sandboxes.
import type { Command } from "commander";
import { chooseDriver, drivers } from "../engine/backends/registry.js";
import { guestBinariesProblem } from "./guest-binaries.js";

export interface DoctorReport {
  /** Set when the engine's guest binaries are missing or do not match it: then nothing runs. */
  guestBinaries?: string;
  /** Set when this process is not root: gVisor needs it (or the SDK's useSudo). */
  notRoot?: string;
  backends: Array<{ name: string; description: string; available: boolean; rank: number; problem?: string; detail?: string }>;
  selected: { name: string; reason: string } | { error: string };
  /** True when the selected engine can run sandboxes. */
  ok: boolean;
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
    const chosen = backends.find((b) => b.name === choice.driver.name);
    selected = chosen?.available === false
      ? { error: `${choice.reason}, which cannot run here: ${chosen.problem}` }
      : { name: choice.driver.name, reason: choice.reason };
  } catch (err) {
    selected = { error: (err as Error).message };
  }
  const guestBinaries = await guestBinariesProblem();
  const uid = process.getuid?.() ?? 0;
  return {
    ...(guestBinaries ? { guestBinaries } : {}),
    ...(uid !== 0 ? { notRoot: `running as uid ${uid}: gVisor needs root (run as root, or use Config.useSudo in the SDK)` } : {}),
    backends,
    selected,
    ok: guestBinaries === undefined && !("error" in selected),
  };
}

export function printDoctorReport(report: DoctorReport): void {
  if (report.notRoot) console.log(report.notRoot);
  if (report.guestBinaries) console.log(`guest binaries: ${report.guestBinaries}`);
  for (const b of report.backends) {
    console.log(`${b.name}: ${b.available ? "available" : "NOT available"}`);
    if (b.problem) console.log(`  ${b.problem}`);
    console.log(`  ${b.description}`);
    if (b.detail) console.log(`  here: ${b.detail}`);
  }
  if ("error" in report.selected) console.log(`selected: none (${report.selected.error})`);
  else console.log(`selected: ${report.selected.name} (${report.selected.reason})`);
}

export function registerDoctorCommand(program: Command): void {
  program
    .command("doctor")
    .description("say which isolation engines work here (gVisor, micro-VM with KVM or TCG) and why; exits 1 when none would")
    .option("--json", "print the report as JSON")
    .action(async (opts: { json?: boolean }) => {
      const report = await doctorReport();
      if (opts.json) console.log(JSON.stringify(report, null, 2));
      else printDoctorReport(report);
      if (!report.ok) process.exitCode = 1;
    });
}
