// Side-by-side timings on the gVisor engine: our SDK + engine against raw runsc and native
// spawns, measured in one run on this machine. Prints medians and ratios.
//   npm run bench            (needs root, runsc and the local images from `npm run setup`)
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { ociConfig } from "../src/engine/backends/gvisor/bundle.js";
import { runscChoice, sandboxFlags } from "../src/engine/backends/gvisor/runsc-choice.js";
import { ImageStore } from "../src/engine/image/store.js";
import { paths } from "../src/engine/paths.js";
import { BUSYBOX, CLI, setUpE2E } from "../test/helpers/e2e.js";
import { stopSharedEngines } from "../test/helpers/shared-engine.js";
import { execRoundTripPairs, median, p99, sdkColdStart, sdkExecRoundTrips, spareBootsEnded, type ColdStart } from "./measure.js";
import { startServer } from "../test/helpers/resident.js";
import { printEngineLoad } from "./engine-load.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 9);
const EXECS = Number(process.env.BENCH_EXECS ?? 100);

function run(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const p = spawn(cmd, args, { stdio: "ignore" });
    p.on("error", reject);
    p.on("exit", (code) => (code === 0 ? resolve(performance.now() - t) : reject(new Error(`${cmd} ${args.join(" ")} exited ${code}`))));
  });
}

async function rawRunscBundle(rootfs: string, dir: string, args: string[]): Promise<string> {
  const config = ociConfig({ id: "bench", image: { kind: "unpacked", ref: "bench", rootfs }, cpus: 1, memoryMb: 512, diskSizeMb: 1024, hostname: "bench", privileged: false, mounts: [], stateDir: dir, logFile: "/dev/null" }, "/bin/true");
  (config.process as { args: string[] }).args = args;
  (config as { mounts: unknown[] }).mounts = (config.mounts as Array<{ destination: string }>).filter((m) => m.destination !== "/.matchlock/agent");
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "config.json"), JSON.stringify(config));
  return dir;
}

async function main(): Promise<void> {
  const home = await setUpE2E();
  const image = await new ImageStore().resolve(BUSYBOX);
  if (!image) throw new Error(`${BUSYBOX} is not imported`);
  const work = await mkdtemp(join(tmpdir(), "matchlock-bench-"));
  const runscRoot = join(work, "runsc");
  // The runsc and platform the engine picks here, so that the bare run is the engine's own runsc.
  const choice = await runscChoice();
  const runsc = (...a: string[]) => ["--root", runscRoot, `--platform=${choice.platform}`, ...sandboxFlags(choice.hasDirectfs), "--network=none", "--overlay2=root:memory", ...a];

  // 1. Cold start: raw `runsc run true` vs SDK launch() -> first exec result, with the default
  // client (the shared engine, which hands out a warm spare booted when the previous sandbox
  // closed), the same without spares (MATCHLOCK_WARM_POOL=0), an engine process per client
  // (`sharedEngine: false`) and an explicit resident engine (`matchlock serve`, spares on).
  // Interleaved round by round in rotating order, so that a load change on the machine hits all
  // of them alike. Each measure starts only once every spare the engines were booting is up, so
  // that no boot runs beside a measure. The default client's first start (which starts the shared
  // engine) is timed apart.
  const rawBundle = await rawRunscBundle(image.rootfs, join(work, "raw"), ["/bin/true"]);
  const server = await startServer(join(work, "engine.sock"));
  const raw: number[] = [];
  const byDefault: ColdStart[] = [];
  const noSpare: ColdStart[] = [];
  const perClient: ColdStart[] = [];
  const resident: ColdStart[] = [];
  let firstDefault: ColdStart;
  // Sandboxes closed on engines that keep spares: each makes one spare boot (or fail), and says so in its log.
  let sparesDue = 0;
  const settle = () => spareBootsEnded(async () => [server.stderr(), ...(await sharedEngineLogs(home))], sparesDue);
  const withoutSpares = async <T>(f: () => Promise<T>): Promise<T> => {
    process.env.MATCHLOCK_WARM_POOL = "0"; // read when the client picks its shared engine
    try {
      return await f();
    } finally {
      delete process.env.MATCHLOCK_WARM_POOL;
    }
  };
  try {
    firstDefault = await sdkColdStart();
    sparesDue++;
    await withoutSpares(() => sdkColdStart()); // starts that shared engine outside the rounds
    await settle();
    for (let i = 0; i < ROUNDS; i++) {
      raw.push(await run(choice.binary, runsc("run", "--bundle", rawBundle, `bench-raw-${i}`)));
      // The SDK clients in turns of their own each round: none always follows the raw run.
      const clients: Array<() => Promise<unknown>> = [
        async () => (byDefault.push(await sdkColdStart()), sparesDue++),
        async () => noSpare.push(await withoutSpares(() => sdkColdStart())),
        async () => perClient.push(await sdkColdStart({ binaryPath: CLI })),
        async () => (resident.push(await sdkColdStart({ engineSocket: server.socketPath })), sparesDue++),
      ];
      for (let k = 0; k < clients.length; k++) {
        await clients[(i + k) % clients.length]!();
        await settle();
      }
    }
  } finally {
    await server.stop();
    await stopSharedEngines(home);
  }
  const totals = (cs: ColdStart[]) => cs.map((c) => c.total);
  const parts = (cs: ColdStart[]) =>
    `engine ${median(cs.map((c) => c.engine)).toFixed(1)} + create ${median(cs.map((c) => c.create)).toFixed(1)} + exec ${median(cs.map((c) => c.exec)).toFixed(1)} ms`;

  // 2. Exec round trip: SDK exec vs `runsc exec` into a running sandbox vs a native spawn.
  const runscExec: number[] = [];
  const sdkExec = await sdkExecRoundTrips(EXECS, async (vmId) => {
    for (let i = 0; i < Math.min(EXECS, 30); i++) {
      runscExec.push(await run(choice.binary, ["--root", paths.runscRoot(), "exec", vmId, "/bin/true"]));
    }
  });
  // The agent alone: the same exec through the engine's own Sandbox in this process, no
  // JSON-RPC, in turn with SDK execs (the issue-8 measure; bench/exec-rtt.ts runs it alone).
  const pairs = await execRoundTripPairs(EXECS);
  const native: number[] = [];
  for (let i = 0; i < EXECS; i++) native.push(await run("/bin/true", []));

  const rows: Array<[string, number, string, number, string]> = [
    ["cold start: launch + first exec, default client (shared engine running, warm spare)", median(totals(byDefault)), "runsc run /bin/true", median(raw), parts(byDefault)],
    ["cold start: launch + first exec, default client without spares (`MATCHLOCK_WARM_POOL=0`)", median(totals(noSpare)), "runsc run /bin/true", median(raw), parts(noSpare)],
    ["cold start: launch + first exec, engine per client (`sharedEngine: false`)", median(totals(perClient)), "runsc run /bin/true", median(raw), parts(perClient)],
    ["cold start: launch + first exec, resident engine (`matchlock serve`, warm spare)", median(totals(resident)), "runsc run /bin/true", median(raw), parts(resident)],
    ["cold start: default client, first one (starts the shared engine; one run)", firstDefault.total, "runsc run /bin/true", median(raw), parts([firstDefault])],
    ["exec `true` round trip (SDK)", median(sdkExec), "runsc exec /bin/true", median(runscExec), `p99 ${p99(sdkExec).toFixed(1)} ms`],
    ["exec `true` round trip (SDK)", median(sdkExec), "native spawn /bin/true", median(native), ""],
    ["exec `true` round trip (SDK), execs paired one by one", median(pairs.sdk), "the same exec, no JSON-RPC", median(pairs.agent),
      `+${(median(pairs.sdk) - median(pairs.agent)).toFixed(2)} ms; p99 ${p99(pairs.sdk).toFixed(1)} vs ${p99(pairs.agent).toFixed(1)} ms`],
  ];
  console.log(`machine: ${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, node ${process.version}; runsc ${choice.version} (${choice.platform}); rounds ${ROUNDS}, execs ${EXECS}`);
  console.log("| measure | matchlock (median ms) | baseline | baseline (median ms) | ratio | note |");
  console.log("|---|---:|---|---:|---:|---|");
  for (const [what, ours, base, baseMs, note] of rows) {
    console.log(`| ${what} | ${ours.toFixed(1)} | ${base} | ${baseMs.toFixed(1)} | ${(ours / baseMs).toFixed(2)}x | ${note} |`);
  }
  await printEngineLoad();
}

/** The logs of the shared engines under this home ($MATCHLOCK_HOME/run/shared-*.log). */
async function sharedEngineLogs(home: string): Promise<string[]> {
  const dir = join(home, "run");
  const names = (await readdir(dir).catch(() => [])).filter((n) => n.startsWith("shared-") && n.endsWith(".log"));
  return Promise.all(names.map((n) => readFile(join(dir, n), "utf8").catch(() => "")));
}

await main();
