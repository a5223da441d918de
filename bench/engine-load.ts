// The engine under load, on every engine the machine has: execStream throughput of a command
// writing 200 MB against the same command run natively, layer by layer (bench/stream-layers.ts);
// how many idle sandboxes start in 30 s; memory per idle sandbox; and the RSS of the
// `matchlock rpc` engine processes while 10 sandboxes run. Called by `npm run bench` (bench/gvisor.ts); alone: `npm run bench:load`.
//   BENCH_ENGINES=gvisor,microvm  BENCH_ROUNDS=5  BENCH_DENSITY_MAX=40
import { readdir, readFile } from "node:fs/promises";
import { Sandbox, type Client } from "../src/sdk/index.js";
import { BUSYBOX, newClient } from "../test/helpers/e2e.js";
import { median } from "./measure.js";
import { LAYER_HEADER, STREAM_COMMAND, layerRow, mbps, measureStreamLayers, type StreamLayers } from "./stream-layers.js";

const DENSITY_WINDOW_MS = 30_000;
const DENSITY_MAX = Number(process.env.BENCH_DENSITY_MAX ?? 40);
const LAUNCH_CONCURRENCY = 2;

/** Every live descendant of this process, with its command line. */
export async function descendants(): Promise<Array<{ pid: number; args: string }>> {
  const parent = new Map<number, number>();
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, "utf8").catch(() => "");
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (ppid) parent.set(Number(name), ppid);
  }
  const mine = (pid: number): boolean => {
    for (let p = parent.get(pid); p; p = parent.get(p)) if (p === process.pid) return true;
    return false;
  };
  const out: Array<{ pid: number; args: string }> = [];
  for (const pid of parent.keys()) {
    if (!mine(pid)) continue;
    const args = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).replaceAll("\0", " ").trim();
    if (args) out.push({ pid, args });
  }
  return out;
}

/** A /proc/<pid>/status or smaps_rollup field in kB (0 if the process is gone). */
async function procKb(pid: number, file: "status" | "smaps_rollup", field: string): Promise<number> {
  const text = await readFile(`/proc/${pid}/${file}`, "utf8").catch(() => "");
  return Number(new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(text)?.[1] ?? 0);
}

async function memAvailableKb(): Promise<number> {
  return Number(/MemAvailable:\s+(\d+)/.exec(await readFile("/proc/meminfo", "utf8"))?.[1]);
}

/**
 * Launches idle busybox sandboxes, `LAUNCH_CONCURRENCY` at a time, until `count`, the deadline
 * or the first failure (the machine is full: that is a result, not an error).
 */
async function launchMany(count: number, deadline = Infinity): Promise<{ clients: Client[]; inTime: number; failure?: string }> {
  const clients: Client[] = [];
  let inTime = 0;
  let next = 0;
  let failure: string | undefined;
  const worker = async () => {
    while (next < count && performance.now() < deadline && failure === undefined) {
      next++;
      const client = newClient();
      clients.push(client);
      try {
        await client.launch(new Sandbox(BUSYBOX));
      } catch (err) {
        failure = (err as Error).message.split("\n")[0];
        return;
      }
      if (performance.now() <= deadline) inTime++;
    }
  };
  await Promise.all(Array.from({ length: LAUNCH_CONCURRENCY }, worker));
  return { clients, inTime, ...(failure === undefined ? {} : { failure }) };
}

async function closeAll(clients: Client[]): Promise<void> {
  for (let i = 0; i < clients.length; i += 4) {
    await Promise.all(clients.slice(i, i + 4).map(async (c) => {
      await c.close().catch(() => undefined);
      await c.remove().catch(() => undefined);
    }));
  }
}

interface EngineLoad {
  engine: string;
  stream: StreamLayers;
  startedIn30s: number;
  capped: boolean;
  /** With 10 idle sandboxes: proportional set size of everything they and their engines hold, per sandbox. */
  pssPerSandboxMb: number;
  /** With 10 idle sandboxes: drop of the host's MemAvailable, per sandbox (noisy on a shared machine). */
  availDropPerSandboxMb: number;
  engineRssMedianMb: number;
  engineRssMaxMb: number;
}

async function measureEngine(engine: string, rounds: number): Promise<EngineLoad | undefined> {
  process.env.MATCHLOCK_BACKEND = engine;
  const probe = newClient();
  try {
    await probe.launch(new Sandbox(BUSYBOX));
  } catch (err) {
    console.error(`${engine}: not measured: ${(err as Error).message.split("\n")[0]}`);
    await probe.close().catch(() => undefined);
    return undefined;
  }
  let stream: EngineLoad["stream"];
  try {
    console.error(`${engine}: execStream 200 MB, layer by layer...`);
    stream = await measureStreamLayers(probe, rounds);
  } finally {
    await closeAll([probe]);
  }

  console.error(`${engine}: 10 idle sandboxes...`);
  const availBefore = await memAvailableKb();
  const ten = await launchMany(10);
  let memory: Pick<EngineLoad, "pssPerSandboxMb" | "availDropPerSandboxMb" | "engineRssMedianMb" | "engineRssMaxMb">;
  try {
    if (ten.failure) throw new Error(`starting 10 sandboxes failed: ${ten.failure}`);
    await new Promise((r) => setTimeout(r, 3000)); // let them settle into idle
    const procs = await descendants();
    const pss = (await Promise.all(procs.map((p) => procKb(p.pid, "smaps_rollup", "Pss")))).reduce((a, b) => a + b, 0);
    const engines = procs.filter((p) => / rpc$/.test(p.args) && p.args.includes("main.js"));
    const rss = await Promise.all(engines.map((p) => procKb(p.pid, "status", "VmRSS")));
    if (engines.length !== 10) throw new Error(`expected 10 engine processes, found ${engines.length}`);
    memory = {
      pssPerSandboxMb: pss / 10 / 1024,
      availDropPerSandboxMb: (availBefore - (await memAvailableKb())) / 10 / 1024,
      engineRssMedianMb: median(rss) / 1024,
      engineRssMaxMb: Math.max(...rss) / 1024,
    };
  } finally {
    await closeAll(ten.clients);
  }

  console.error(`${engine}: density, ${DENSITY_WINDOW_MS / 1000} s...`);
  const dense = await launchMany(DENSITY_MAX, performance.now() + DENSITY_WINDOW_MS);
  await closeAll(dense.clients);
  if (dense.failure) console.error(`${engine}: launching stopped at ${dense.inTime}: ${dense.failure}`);
  return { engine, stream, startedIn30s: dense.inTime, capped: dense.inTime >= DENSITY_MAX, ...memory };
}

/** Measures the engines and prints the table. */
export async function printEngineLoad(engines = (process.env.BENCH_ENGINES ?? "gvisor,microvm").split(",").filter(Boolean)): Promise<void> {
  const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
  const results: EngineLoad[] = [];
  for (const engine of engines) {
    const r = await measureEngine(engine, rounds);
    if (r) results.push(r);
  }
  console.log(`\nengine under load (median of ${rounds} streams; sandboxes launched ${LAUNCH_CONCURRENCY} at a time; one \`matchlock rpc\` per sandbox, as the SDK runs them)`);
  console.log("| engine | execStream 200 MB | same command natively | ratio | idle sandboxes started in 30 s | memory per idle sandbox (PSS) | MemAvailable drop per sandbox | `matchlock rpc` RSS with 10 sandboxes (median / max) |");
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
  for (const r of results) {
    console.log(`| ${r.engine} | ${r.stream.sdk.toFixed(0)} ms, ${mbps(r.stream.sdk)} | ${r.stream.native.toFixed(0)} ms, ${mbps(r.stream.native)} | ${(r.stream.sdk / r.stream.native).toFixed(1)}x | ` +
      `${r.startedIn30s}${r.capped ? " (the cap, BENCH_DENSITY_MAX)" : ""} | ${r.pssPerSandboxMb.toFixed(0)} MB | ${r.availDropPerSandboxMb.toFixed(0)} MB | ${r.engineRssMedianMb.toFixed(0)} / ${r.engineRssMaxMb.toFixed(0)} MB |`);
  }
  console.log(`\nwhere execStream's time goes: \`${STREAM_COMMAND}\`, each layer's median and its ratio to native`);
  for (const line of LAYER_HEADER) console.log(line);
  for (const r of results) console.log(layerRow(r.engine, r.stream));
}
