// Exec round trip on the gVisor engine: SDK `exec("true")` against the same exec without
// JSON-RPC (see execRoundTripPairs), one of each in turn. Prints medians and p99 of each, the
// difference of the medians and the median of the pairwise differences; then
// the CPU time per SDK exec of the engine and of the SDK, which the machine's load hardly moves.
//   npm run bench:exec      (BENCH_EXECS pairs, default 500; as many execs for the CPU times)
import { cpus, loadavg } from "node:os";
import { setUpE2E } from "../test/helpers/e2e.js";
import { execCpu } from "./exec-cpu.js";
import { execRoundTripPairs, median, p99 } from "./measure.js";

const EXECS = Number(process.env.BENCH_EXECS ?? 500);

async function main(): Promise<void> {
  await setUpE2E();
  const load = loadavg()[0]!;
  const { sdk, agent } = await execRoundTripPairs(EXECS);
  const line = (what: string, xs: number[]) => `${what}: median ${median(xs).toFixed(2)} ms, p99 ${p99(xs).toFixed(2)} ms`;
  console.log(`machine: ${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, node ${process.version}; ${EXECS} pairs; load average ${load.toFixed(1)} -> ${loadavg()[0]!.toFixed(1)}`);
  console.log(line("SDK exec(\"true\")         ", sdk));
  console.log(line("same exec, no JSON-RPC   ", agent));
  const pairwise = sdk.map((t, i) => t - agent[i]!);
  console.log(`SDK overhead: difference of medians ${(median(sdk) - median(agent)).toFixed(2)} ms, median of pairwise differences ${median(pairwise).toFixed(2)} ms`);
  const cpu = await execCpu(EXECS);
  const us = (c: { user: number; system: number }) => `${(c.user + c.system).toFixed(0)} us (user ${c.user.toFixed(0)}, system ${c.system.toFixed(0)})`;
  console.log(`CPU per SDK exec: engine ${us(cpu.engine)}, SDK ${us(cpu.sdk)}; load average now ${loadavg()[0]!.toFixed(1)}`);
}

await main();
