// File throughput through each mount kind, side by side with the same work on the host's own
// disk, measured in one run: a 200 MB file (write, read) and 10,000 small files (write, read)
// through a read-write host dir, a read-only host dir (reads only), a memory mount, an overlay
// and the guest's root file system, on every engine the machine has. Prints medians and ratios.
//   npm run bench:mounts     (needs root, the engines and the local images from `npm run setup`)
//   BENCH_ROUNDS=3  BENCH_ENGINES=gvisor,microvm
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { cpus, totalmem, tmpdir } from "node:os";
import { join } from "node:path";
import { Sandbox, type Client } from "../src/sdk/index.js";
import { BUSYBOX, newClient, setUpE2E } from "../test/helpers/e2e.js";
import { median } from "./measure.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const ENGINES = (process.env.BENCH_ENGINES ?? "gvisor,microvm").split(",").filter(Boolean);
const BIG_MB = 200;
const SMALL = 10_000;

/** The work, as busybox shell scripts over a directory, so guest and host run the very same commands. */
const WORK = {
  writeBig: (d: string) => `dd if=/dev/zero of=${d}/big bs=1M count=${BIG_MB} 2>/dev/null`,
  readBig: (d: string) => `dd if=${d}/big of=/dev/null bs=1M 2>/dev/null`,
  writeSmall: (d: string) => `mkdir -p ${d}/small && cd ${d}/small && i=0 && while [ $i -lt ${SMALL} ]; do echo data-$i > f$i; i=$((i+1)); done`,
  readSmall: (d: string) => `cd ${d}/small && cat * > /dev/null`,
};
type Op = keyof typeof WORK;
const OPS: Op[] = ["writeBig", "readBig", "writeSmall", "readSmall"];
const LABEL: Record<Op, string> = {
  writeBig: `write ${BIG_MB} MB`, readBig: `read ${BIG_MB} MB`, writeSmall: `write ${SMALL.toLocaleString("en")} files`, readSmall: `read ${SMALL.toLocaleString("en")} files`,
};

interface Kind {
  name: string;
  /** Where the work happens in the guest. */
  dir: string;
  /** Pre-made data to read (read-only and overlay mounts) instead of what the writes made. */
  readsPremade: boolean;
  writable: boolean;
}
const KINDS: Kind[] = [
  { name: "host dir, read-write", dir: "/bench/rw", readsPremade: false, writable: true },
  { name: "host dir, read-only", dir: "/bench/ro", readsPremade: true, writable: false },
  { name: "memory", dir: "/bench/mem", readsPremade: false, writable: true },
  { name: "overlay of a host dir", dir: "/bench/ov", readsPremade: true, writable: true },
  { name: "guest root file system", dir: "/root/bench", readsPremade: false, writable: true },
];

function sh(script: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const p = spawn("busybox", ["sh", "-c", script], { stdio: ["ignore", "ignore", "inherit"] });
    p.on("error", reject);
    p.on("exit", (code) => (code === 0 ? resolve(performance.now() - t) : reject(new Error(`host: ${script.slice(0, 60)}... exited ${code}`))));
  });
}

async function guest(client: Client, script: string): Promise<number> {
  const t = performance.now();
  const r = await client.exec(script);
  if (r.exitCode !== 0) throw new Error(`guest: ${script.slice(0, 60)}... exited ${r.exitCode}: ${r.stderr.slice(0, 300)}`);
  return performance.now() - t;
}

/** Runs the four operations `ROUNDS` times in `dir` (writes into `dir/w`, reads from `premade` or `dir/w`). */
async function measure(run: (s: string) => Promise<number>, dir: string, premade: string | undefined, writable: boolean): Promise<Partial<Record<Op, number>>> {
  const times: Partial<Record<Op, number[]>> = {};
  const add = (op: Op, ms: number) => (times[op] ??= []).push(ms);
  for (let i = 0; i < ROUNDS; i++) {
    if (writable) {
      await run(`rm -rf ${dir}/w && mkdir -p ${dir}/w && sync`);
      add("writeBig", await run(WORK.writeBig(`${dir}/w`)));
      add("writeSmall", await run(WORK.writeSmall(`${dir}/w`)));
    }
    const from = premade ?? `${dir}/w`;
    add("readBig", await run(WORK.readBig(from)));
    add("readSmall", await run(WORK.readSmall(from)));
  }
  if (writable) await run(`rm -rf ${dir}/w`);
  return Object.fromEntries(Object.entries(times).map(([op, xs]) => [op, median(xs)]));
}

async function engineRows(
  engine: string, hostDirs: { rw: string; premade: string }, report: (where: string, t: Partial<Record<Op, number>>) => void,
): Promise<void> {
  process.env.MATCHLOCK_BACKEND = engine;
  const client = newClient();
  try {
    await client.launch(
      new Sandbox(BUSYBOX).withMemory(1024).withDiskSize(1024)
        .mountHostDir("/bench/rw", hostDirs.rw)
        .mountHostDirReadonly("/bench/ro", hostDirs.premade)
        .mountMemory("/bench/mem")
        .mountOverlay("/bench/ov", hostDirs.premade),
    );
  } catch (err) {
    console.error(`${engine}: not measured: ${(err as Error).message.split("\n")[0]}`);
    await client.close().catch(() => undefined);
    return;
  }
  try {
    for (const kind of KINDS) {
      console.error(`${engine}: ${kind.name}...`);
      report(`${engine}: ${kind.name}`, await measure((s) => guest(client, s), kind.dir, kind.readsPremade ? kind.dir : undefined, kind.writable));
    }
  } finally {
    await client.close();
    await client.remove();
  }
}

async function main(): Promise<void> {
  await setUpE2E();
  const work = await mkdtemp(join(tmpdir(), "matchlock-bench-mounts-"));
  const hostDirs = { rw: join(work, "rw"), premade: join(work, "premade"), native: join(work, "native") };
  for (const d of Object.values(hostDirs)) await mkdir(d);
  try {
    await sh(`${WORK.writeBig(hostDirs.premade)} && ${WORK.writeSmall(hostDirs.premade)}`);
    console.error("host disk...");
    const host = await measure(sh, hostDirs.native, undefined, true);
    // Rows as they are measured: a long run that stops half-way still leaves its numbers.
    console.log(`machine: ${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, ${Math.round(totalmem() / 2 ** 30)} GiB, node ${process.version}; median of ${ROUNDS} rounds; host disk = the same busybox commands on the host's ext4 (page cache warm, no fsync, as in the guest)`);
    console.log(`| where | ${OPS.map((op) => LABEL[op]).join(" | ")} |`);
    console.log(`|---|${OPS.map(() => "---:").join("|")}|`);
    const cell = (ms: number | undefined, base: number | undefined) => (ms === undefined ? "–" : base ? `${ms.toFixed(0)} ms (${(ms / base).toFixed(1)}x)` : `${ms.toFixed(0)} ms`);
    const mbps = (ms: number | undefined) => (ms ? `${(BIG_MB / (ms / 1000)).toFixed(0)} MB/s` : "–");
    console.log(`| host disk, native | ${OPS.map((op) => cell(host[op], undefined)).join(" | ")} |`);
    const throughput = [`host ${mbps(host.writeBig)} / ${mbps(host.readBig)}`];
    for (const engine of ENGINES) {
      await engineRows(engine, hostDirs, (where, t) => {
        console.log(`| ${where} | ${OPS.map((op) => cell(t[op], host[op])).join(" | ")} |`);
        throughput.push(`${where} ${mbps(t.writeBig)} / ${mbps(t.readBig)}`);
      });
    }
    console.log(`\n${BIG_MB} MB throughput (write / read): ${throughput.join("; ")}`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
