// Exec round trip on the gVisor engine: SDK `exec("true")` (SDK -> engine -> agent -> back)
// against the agent alone (the same frames over the same runsc stdio, driven in-process, no
// JSON-RPC), in alternating blocks on two live sandboxes so that a load change on the machine
// hits both alike. Prints medians and p99 of each and the SDK's overhead.
//   npm run build && node dist/bench/exec-rtt.js      (BENCH_ROUNDS blocks of BENCH_EXECS each)
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { GvisorBackend } from "../src/engine/backends/gvisor/runsc.js";
import { ImageStore } from "../src/engine/image/store.js";
import { Sandbox } from "../src/sdk/index.js";
import { BUSYBOX, newClient, setUpE2E } from "../test/helpers/e2e.js";
import { median, p99 } from "./measure.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const EXECS = Number(process.env.BENCH_EXECS ?? 100);

async function block(op: () => Promise<unknown>, into: number[]): Promise<void> {
  for (let i = 0; i < EXECS; i++) {
    const t = performance.now();
    await op();
    into.push(performance.now() - t);
  }
}

async function main(): Promise<void> {
  await setUpE2E();
  const image = await new ImageStore().resolve(BUSYBOX);
  if (!image) throw new Error(`${BUSYBOX} is not imported`);
  const work = await mkdtemp(join(tmpdir(), "matchlock-execrtt-"));
  const id = "vm-rtt" + String(Date.now() % 100000).padStart(5, "0");
  const stateDir = join(work, id);
  await mkdir(stateDir, { recursive: true });
  const bare = await new GvisorBackend().start({
    id, rootfs: image.rootfs, cpus: 1, memoryMb: 512, diskSizeMb: 1024, hostname: id, mounts: [], stateDir, logFile: join(stateDir, "log"),
  });
  const client = newClient();
  const sdk: number[] = [];
  const agent: number[] = [];
  try {
    await client.launch(new Sandbox(BUSYBOX));
    // The engine's sandbox runs commands with the image's environment and working directory;
    // the bare one gets the same kind of request (a PATH, cwd "/").
    const agentExec = () => bare.agent.exec({ command: "true", cwd: "/", user: "", env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"] }, { stdout() {}, stderr() {} });
    const sdkExec = () => client.exec("true");
    await block(sdkExec, []); // warm-up: JIT, page cache
    await block(agentExec, []);
    for (let r = 0; r < ROUNDS; r++) {
      await block(sdkExec, sdk);
      await block(agentExec, agent);
    }
  } finally {
    await client.close().catch(() => {});
    await client.remove().catch(() => {});
    await bare.stop(2000);
    await rm(work, { recursive: true, force: true });
  }
  const line = (what: string, xs: number[]) => `${what}: median ${median(xs).toFixed(2)} ms, p99 ${p99(xs).toFixed(2)} ms (${xs.length} execs)`;
  console.log(`machine: ${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, node ${process.version}; ${ROUNDS} rounds of ${EXECS}`);
  console.log(line("SDK exec(\"true\")        ", sdk));
  console.log(line("agent alone, no JSON-RPC", agent));
  console.log(`overhead: median +${(median(sdk) - median(agent)).toFixed(2)} ms`);
}

await main();
