// What VFS interception costs: the same file work in a read-write host dir mounted plainly and
// mounted with interception (one block rule that matches nothing, so every operation is checked
// and reported as an event), on every engine the machine has. Prints medians and the ratio
// intercepted / plain time (2.0 = twice as slow), with the load average of the run.
//   npm run bench:vfs-intercept     (needs root, the engines and the local images from `npm run setup`)
//   BENCH_ROUNDS=3  BENCH_ENGINES=gvisor,microvm
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Sandbox, type BackendName, type Client } from "../src/sdk/index.js";
import { BUSYBOX, newClient, setUpE2E } from "../test/helpers/e2e.js";
import { median } from "./measure.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const ENGINES = (process.env.BENCH_ENGINES ?? "gvisor,microvm").split(",").filter(Boolean);
const BIG_MB = 50;
const SMALL = 1_000;

const WORK: Array<[string, (d: string) => string]> = [
  [`write ${BIG_MB} MB`, (d) => `dd if=/dev/zero of=${d}/big bs=1M count=${BIG_MB} 2>/dev/null`],
  [`read ${BIG_MB} MB`, (d) => `dd if=${d}/big of=/dev/null bs=1M 2>/dev/null`],
  [`write ${SMALL} files`, (d) => `mkdir -p ${d}/small && cd ${d}/small && i=0 && while [ $i -lt ${SMALL} ]; do echo data-$i > f$i; i=$((i+1)); done`],
  [`read ${SMALL} files`, (d) => `cd ${d}/small && cat * > /dev/null`],
  ["list, stat, remove", (d) => `ls -l ${d}/small > /dev/null && rm -r ${d}/small ${d}/big`],
];

async function timeWork(client: Client, dir: string): Promise<number[]> {
  const out: number[] = [];
  for (const [, script] of WORK) {
    const t = performance.now();
    const r = await client.exec(script(dir));
    if (r.exitCode !== 0) throw new Error(`${script(dir).slice(0, 60)}... exited ${r.exitCode}: ${r.stderr}`);
    out.push(performance.now() - t);
  }
  return out;
}

async function measure(engine: string, intercepted: boolean): Promise<number[]> {
  const host = await mkdtemp(join(tmpdir(), "bench-vfs-"));
  const client = newClient();
  let events = 0;
  client.onEvent((e) => { if (e.type === "file") events++; });
  try {
    let sb = new Sandbox(BUSYBOX).withBackend(engine as BackendName).mountHostDir("/bench", host);
    if (intercepted) sb = sb.withVFSInterception({ rules: [{ ops: ["create"], path: "/bench/never-made", action: "block" }] });
    await client.launch(sb);
    const rounds: number[][] = [];
    for (let i = 0; i < ROUNDS; i++) rounds.push(await timeWork(client, "/bench"));
    if (intercepted && events === 0) throw new Error("no file events: the mount was not intercepted");
    return WORK.map((_, op) => median(rounds.map((r) => r[op]!)));
  } finally {
    await client.close().catch(() => {});
    await client.remove().catch(() => {});
    await rm(host, { recursive: true, force: true });
  }
}

await setUpE2E();
const load = loadavg()[0]!.toFixed(1);
console.log(`machine: ${cpus().length} cpus, load ${load} at start; median of ${ROUNDS} rounds; times in ms`);
for (const engine of ENGINES) {
  const plain = await measure(engine, false);
  const intercepted = await measure(engine, true);
  console.log(`\n${engine}:\n| work | plain | intercepted | ratio |\n|---|---:|---:|---:|`);
  for (const [i, [label]] of WORK.entries()) {
    console.log(`| ${label} | ${plain[i]!.toFixed(0)} | ${intercepted[i]!.toFixed(0)} | ${(intercepted[i]! / plain[i]!).toFixed(2)} |`);
  }
}
console.log(`\nload ${loadavg()[0]!.toFixed(1)} at end`);
