// Agent workloads, native against every way this machine can run a sandbox: the default engine
// (whatever `auto` picks here), gVisor on each platform the runsc offers (kvm only with real
// VT-x/AMD-V), the host's own older runsc if there is one, and the micro-VM. Six syscall-heavy
// jobs of the kind agents run (many small files, a compile, fork+exec, unpacking an archive,
// hashing, a pipe), each timed through the SDK as an agent sees it (exec round trip included),
// natively by spawning `sh -c` in a memory directory under the same CPU quota. Rounds are interleaved (every config, then
// the next round) so a change of the shared machine's load hits all alike; medians per config.
// Plus the SDK exec("true") round trip.
//   npm run bench:workload       BENCH_ROUNDS=5  BENCH_EXECS=20 (per round)
//   BENCH_CONFIGS=native,default,...  run only those (names as printed)
//   BENCH_AGENT_BEFORE=<agent binary>  adds the default engine with that agent (a before/after)
import { spawn } from "node:child_process";
import { access, chmod, mkdir, mkdtemp, rm, rmdir, writeFile } from "node:fs/promises";
import { cpus, loadavg, release, tmpdir } from "node:os";
import { join } from "node:path";
import { chooseAccel, hostFacts } from "../src/engine/backends/microvm/accel.js";
import { runscChoice } from "../src/engine/backends/gvisor/runsc-choice.js";
import { chooseDriver } from "../src/engine/backends/registry.js";
import { Sandbox, type Client } from "../src/sdk/index.js";
import { PYTHON, newClient, setUpE2E } from "../test/helpers/e2e.js";
import { median } from "./measure.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const EXECS = Number(process.env.BENCH_EXECS ?? 20);
const MEMORY_MB = 2048;
const GUEST_DIR = "/var/tmp/workload";
const STDLIB_PACKAGES = "json email http urllib xml logging concurrent importlib asyncio unittest";

/** Untimed: the inputs of the workloads, made alike natively and in the guest. */
const PREPARE = String.raw`set -e
mkdir -p "$W" && cd "$W"
python3 - <<'PY'
import os
for i in range(1188):
    d = "tree/d%02d" % (i % 40)
    os.makedirs(d, exist_ok=True)
    with open("%s/f%04d" % (d, i), "wb") as f:
        f.write(os.urandom(50 * 1024 * 1024 // 1188))
PY
tar -cf tree.tar tree && rm -rf tree
head -c 200000000 /dev/urandom > big
mkdir -p lib && for p in ${STDLIB_PACKAGES}; do cp -r /usr/lib/python3.11/$p lib/; done
echo "$(find lib -name '*.py' | wc -l) modules"`;

const SMALL_FILES = String.raw`python3 -c '
import os
os.makedirs("small", exist_ok=True)
data = b"x" * 1024
for i in range(2000):
    with open("small/%d" % i, "wb") as f: f.write(data)
for i in range(2000):
    with open("small/%d" % i, "rb") as f: f.read()
for i in range(2000):
    os.unlink("small/%d" % i)
'`;

/** name, then the command (run in the work directory; $R is the round, for fresh paths). */
const WORKLOADS: Array<[string, string]> = [
  ["Python: write+read+unlink 2000 small files", SMALL_FILES],
  ["python -m compileall -f (stdlib packages)", "python3 -m compileall -f -q lib >/dev/null"],
  ["200 x fork+exec /bin/true", "i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done"],
  ["tar -xf 50 MB, 1188 files", 'mkdir x$R && tar -xf tree.tar -C x$R'],
  ["sha256sum 200 MB", "sha256sum big >/dev/null"],
  ["200 MB head -c | cat", "head -c 200000000 /dev/zero | cat >/dev/null"],
];
const CLEAN_UP = "rm -rf x$R small";

interface Config {
  name: string;
  /** Engine environment (set while its client starts the engine); absent: native. */
  env?: Record<string, string | undefined>;
}

interface Runner {
  run(command: string): Promise<number>;
  close(): Promise<void>;
}

/**
 * Native commands run in memory (a directory on /dev/shm, as the guest's root file system is
 * under gVisor) and in a CPU cgroup beside the sandboxes' own (cgroup v1 cpu/matchlock/...)
 * with the same 1-CPU quota: on a loaded host a sandbox's cgroup gets its fair share as a
 * group, and native processes in the crowded root cgroup would get far less.
 */
async function nativeRunner(): Promise<Runner> {
  const dir = await mkdtemp("/dev/shm/matchlock-workload-native-");
  const cgroup = `/sys/fs/cgroup/cpu/matchlock/bench-native-${process.pid}`;
  await mkdir(cgroup, { recursive: true });
  await writeFile(join(cgroup, "cpu.cfs_period_us"), "100000");
  await writeFile(join(cgroup, "cpu.cfs_quota_us"), "100000");
  const run = (command: string) => new Promise<number>((resolve, reject) => {
    const t = performance.now();
    const p = spawn("sh", ["-c", 'echo $$ > "$0/cgroup.procs" && exec sh -c "$1"', cgroup, command], { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    p.stderr.on("data", (d) => (err += d));
    p.on("error", reject);
    p.on("exit", (code) => (code === 0 ? resolve(performance.now() - t) : reject(new Error(`native ${command}: status ${code}: ${err}`))));
  });
  return {
    run,
    close: async () => {
      await rm(dir, { recursive: true, force: true });
      await rmdir(cgroup).catch(() => {});
    },
  };
}

async function sandboxRunner(config: Config): Promise<Runner> {
  const saved = Object.fromEntries(Object.keys(config.env!).map((k) => [k, process.env[k]]));
  let client: Client;
  try {
    for (const [k, v] of Object.entries(config.env!)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    client = newClient();
    await client.start(); // the engine takes this environment
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
  await client.launch(new Sandbox(PYTHON).withMemory(MEMORY_MB));
  await client.exec(`mkdir -p ${GUEST_DIR}`);
  const run = async (command: string) => {
    const t = performance.now();
    const r = await client.exec(command, { workingDir: GUEST_DIR });
    const took = performance.now() - t;
    if (r.exitCode !== 0) throw new Error(`${config.name}: ${command}: status ${r.exitCode}: ${r.stderr}`);
    return took;
  };
  return { run, close: async () => { await client.close(); await client.remove(); } };
}

/** A runsc that turns our --directfs=false back on: what directfs would buy, measured. */
async function directfsWrapper(dir: string, runsc: string): Promise<string> {
  const wrapper = join(dir, "runsc-directfs-on");
  await writeFile(wrapper, `#!/bin/sh\nfor a; do shift; [ "$a" = --directfs=false ] && a=--directfs=true; set -- "$@" "$a"; done\nexec ${runsc} "$@"\n`);
  await chmod(wrapper, 0o755);
  return wrapper;
}

async function configs(work: string): Promise<Config[]> {
  const clean = { MATCHLOCK_BACKEND: undefined, MATCHLOCK_RUNSC: undefined, MATCHLOCK_RUNSC_PLATFORM: undefined, MATCHLOCK_AGENT: undefined };
  const choice = await runscChoice();
  const gvisor = { ...clean, MATCHLOCK_BACKEND: "gvisor", MATCHLOCK_RUNSC: choice.binary };
  const list: Config[] = [{ name: "native" }, { name: "default", env: clean }];
  for (const platform of choice.platforms) {
    if (platform === "kvm" && chooseAccel(await hostFacts(), "auto").accel !== "kvm") continue;
    list.push({ name: `gvisor ${choice.version} ${platform}`, env: { ...gvisor, MATCHLOCK_RUNSC_PLATFORM: platform } });
  }
  if (choice.hasDirectfs) {
    list.push({ name: `gvisor ${choice.version} ${choice.platform} directfs`, env: { ...gvisor, MATCHLOCK_RUNSC: await directfsWrapper(work, choice.binary), MATCHLOCK_RUNSC_PLATFORM: choice.platform } });
  }
  const hostRunsc = "/usr/bin/runsc";
  if (choice.binary !== hostRunsc && (await access(hostRunsc).then(() => true, () => false))) {
    process.env.MATCHLOCK_RUNSC = hostRunsc;
    const host = await runscChoice().finally(() => delete process.env.MATCHLOCK_RUNSC);
    list.push({ name: `gvisor ${host.version} ${host.platform} (host's runsc)`, env: { ...clean, MATCHLOCK_BACKEND: "gvisor", MATCHLOCK_RUNSC: hostRunsc } });
  }
  if (process.env.BENCH_AGENT_BEFORE) list.push({ name: "default agent-before", env: { ...clean, MATCHLOCK_AGENT: process.env.BENCH_AGENT_BEFORE } });
  list.push({ name: "microvm", env: { ...clean, MATCHLOCK_BACKEND: "microvm" } });
  const only = process.env.BENCH_CONFIGS?.split(",").map((s) => s.trim());
  return only ? list.filter((c) => only.includes(c.name)) : list;
}

async function main(): Promise<void> {
  await setUpE2E();
  const work = await mkdtemp(join(tmpdir(), "matchlock-workload-"));
  const list = await configs(work);
  const defaultChoice = await chooseDriver();
  const loadBefore = loadavg()[0]!;
  console.log(`machine: ${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, kernel ${release()}, node ${process.version}`);
  console.log(`default engine here: ${defaultChoice.reason}`);
  console.log(`${ROUNDS} interleaved rounds, ${EXECS} exec("true") per config per round; ${PYTHON}, ${MEMORY_MB} MiB, 1 CPU`);

  const runners = new Map<string, Runner>();
  for (const c of list) {
    const runner = c.env ? await sandboxRunner(c) : await nativeRunner();
    runners.set(c.name, runner);
    const dir = c.env ? GUEST_DIR : undefined;
    await runner.run(`export W=${dir ?? "."}; ${PREPARE}`);
  }
  const times = new Map<string, number[][]>(list.map((c) => [c.name, WORKLOADS.map(() => [])]));
  const execs = new Map<string, number[]>(list.map((c) => [c.name, []]));
  try {
    for (let round = -1; round < ROUNDS; round++) { // round -1 warms caches up and is not kept
      for (const c of list) {
        const runner = runners.get(c.name)!;
        for (const [i, [, command]] of WORKLOADS.entries()) {
          const t = await runner.run(`R=${round + 1}; ${command}`);
          if (round >= 0) times.get(c.name)![i]!.push(t);
        }
        await runner.run(`R=${round + 1}; ${CLEAN_UP}`);
        for (let i = 0; i < EXECS; i++) {
          const t = await runner.run("true");
          if (round >= 0) execs.get(c.name)!.push(t);
        }
      }
      console.log(`round ${round + 1}/${ROUNDS} done, load ${loadavg()[0]!.toFixed(1)}`);
    }
  } finally {
    for (const r of runners.values()) await r.close().catch(() => {});
    await rm(work, { recursive: true, force: true });
  }

  const med = (name: string, i: number) => median(times.get(name)![i]!);
  const native = list.find((c) => c.name === "native");
  const ratio = (name: string, value: number, base: number | undefined) => (base ? `${(value / base).toFixed(1)}x` : `${value.toFixed(0)} ms`);
  const others = list.filter((c) => c !== native);
  console.log(`\n| workload |${native ? " native |" : ""}${others.map((c) => ` ${c.name} |`).join("")}`);
  console.log(`|---|${native ? "---:|" : ""}${others.map(() => "---:|").join("")}`);
  for (const [i, [what]] of WORKLOADS.entries()) {
    const base = native ? med("native", i) : undefined;
    console.log(`| ${what} |${base !== undefined ? ` ${base.toFixed(0)} ms |` : ""}${others.map((c) => ` ${ratio(c.name, med(c.name, i), base)} |`).join("")}`);
  }
  const sum = (name: string) => WORKLOADS.reduce((s, _, i) => s + med(name, i), 0);
  const baseSum = native ? sum("native") : undefined;
  console.log(`| sum of the six |${baseSum !== undefined ? ` ${baseSum.toFixed(0)} ms |` : ""}${others.map((c) => ` **${ratio(c.name, sum(c.name), baseSum)}** |`).join("")}`);
  const execLine = (name: string) => `${median(execs.get(name)!).toFixed(1)} ms`;
  console.log(`| exec \`true\` round trip (median) |${native ? ` ${execLine("native")} (spawn) |` : ""}${others.map((c) => ` ${execLine(c.name)} |`).join("")}`);
  console.log(`\nload average ${loadBefore.toFixed(1)} -> ${loadavg()[0]!.toFixed(1)}`);
}

await main();
