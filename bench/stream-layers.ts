// Where execStream's time goes, layer by layer, for one command writing STREAM_BYTES to stdout:
//   in the sandbox alone  - the command writing into a pipe read by `cat > /dev/null`, inside
//                           the sandbox (what the isolation engine's syscalls cost by themselves);
//   agent channel alone   - the engine's AgentConnection.exec, in-process, no JSON-RPC or base64;
//   SDK execStream        - the whole path (agent, engine, JSON-RPC with base64, SDK);
//   native                - the same command on the host, read through a Node pipe.
// Used by bench/engine-load.ts (npm run bench:load); alone: node dist/bench/stream-layers.js
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { chooseDriver } from "../src/engine/backends/registry.js";
import { ImageStore } from "../src/engine/image/store.js";
import { Sandbox, type Client } from "../src/sdk/index.js";
import { BUSYBOX, newClient, setUpE2E } from "../test/helpers/e2e.js";
import { median, timed } from "./measure.js";

export const STREAM_BYTES = 200 * 1024 * 1024;
export const STREAM_COMMAND = `head -c ${STREAM_BYTES} /dev/zero`;

export interface StreamLayers {
  /** Medians in ms. */
  inSandbox: number;
  agentOnly: number;
  sdk: number;
  native: number;
}

function counter(): { sink: Writable; bytes: () => number } {
  let n = 0;
  return { sink: new Writable({ write(chunk: Buffer, _enc, cb) { n += chunk.length; cb(); } }), bytes: () => n };
}

/** The same command on the host through a Node pipe. */
export function nativeStream(): Promise<void> {
  const n = counter();
  return new Promise<void>((resolve, reject) => {
    const p = spawn("busybox", ["sh", "-c", STREAM_COMMAND], { stdio: ["ignore", "pipe", "inherit"] });
    p.stdout.pipe(n.sink);
    p.on("error", reject);
    p.on("close", (code) => (code === 0 && n.bytes() === STREAM_BYTES ? resolve() : reject(new Error(`native stream: exit ${code}, ${n.bytes()} bytes`))));
  });
}

/** execStream through the SDK, checking every byte arrived. */
export async function sdkStream(client: Client): Promise<void> {
  const c = counter();
  const r = await client.execStream(STREAM_COMMAND, { stdout: c.sink });
  if (r.exitCode !== 0 || c.bytes() !== STREAM_BYTES) throw new Error(`execStream delivered ${c.bytes()} bytes, exit ${r.exitCode}`);
}

/** How long `command` takes inside the sandbox, by the sandbox's own clock (ms, 10 ms resolution). */
export async function timeInSandbox(client: Client, command: string): Promise<number> {
  // busybox date has no sub-second format; /proc/uptime has centiseconds
  const r = await client.exec(`a=$(cut -d' ' -f1 /proc/uptime); ${command}; b=$(cut -d' ' -f1 /proc/uptime); echo $a $b`);
  const [a, b] = r.stdout.trim().split(" ").map(Number);
  if (r.exitCode !== 0 || a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b)) {
    throw new Error(`in-sandbox timing of ${command} failed: exit ${r.exitCode}: ${r.stdout} ${r.stderr}`);
  }
  return (b - a) * 1000;
}

/** AgentConnection.exec in this process, on a sandbox started straight from the backend. */
async function agentOnly(rounds: number): Promise<number> {
  const image = await new ImageStore().resolve(BUSYBOX);
  if (!image) throw new Error(`${BUSYBOX} is not imported`);
  const { driver: backend } = await chooseDriver();
  const work = await mkdtemp(join(tmpdir(), "matchlock-sbench-"));
  const id = "vm-sbench" + String(Date.now() % 10000).padStart(4, "0");
  const stateDir = join(work, id);
  await mkdir(stateDir, { recursive: true });
  const sandbox = await backend.start({
    id, image: { kind: "unpacked", ref: BUSYBOX, rootfs: image.rootfs }, cpus: 1, memoryMb: 512, diskSizeMb: 1024, hostname: id, privileged: false, mounts: [], stateDir, logFile: join(stateDir, "log"),
  });
  try {
    return await timed(rounds, async () => {
      let n = 0;
      const exit = await sandbox.agent.exec({ command: STREAM_COMMAND, cwd: "/", user: "", env: ["PATH=/bin:/usr/bin"] }, {
        stdout: (d) => void (n += d.length),
        stderr: () => undefined,
      });
      if (exit.code !== 0 || n !== STREAM_BYTES) throw new Error(`agent exec delivered ${n} bytes, exit ${exit.code}`);
    });
  } finally {
    await sandbox.stop(2000);
    await rm(work, { recursive: true, force: true });
  }
}

/** All four layers on the current engine ($MATCHLOCK_BACKEND), `rounds` each, interleaved SDK/native. */
export async function measureStreamLayers(client: Client, rounds: number): Promise<StreamLayers> {
  const sdk: number[] = [];
  const native: number[] = [];
  const inside: number[] = [];
  for (let i = 0; i < rounds; i++) {
    let t = performance.now();
    await sdkStream(client);
    sdk.push(performance.now() - t);
    t = performance.now();
    await nativeStream();
    native.push(performance.now() - t);
    inside.push(await timeInSandbox(client, `${STREAM_COMMAND} | cat > /dev/null`));
  }
  return { sdk: median(sdk), native: median(native), inSandbox: median(inside), agentOnly: await agentOnly(rounds) };
}

export function mbps(ms: number): string {
  return `${(STREAM_BYTES / 2 ** 20 / (ms / 1000)).toFixed(0)} MB/s`;
}

export function layerRow(engine: string, l: StreamLayers): string {
  const cell = (ms: number) => `${ms.toFixed(0)} ms, ${mbps(ms)}, ${(ms / l.native).toFixed(1)}x`;
  return `| ${engine} | ${cell(l.sdk)} | ${cell(l.agentOnly)} | ${cell(l.inSandbox)} | ${l.native.toFixed(0)} ms, ${mbps(l.native)} |`;
}

export const LAYER_HEADER = [
  "| engine | SDK execStream (ratio to native) | agent channel alone | inside the sandbox (`| cat > /dev/null`) | native, through a Node pipe |",
  "|---|---:|---:|---:|---:|",
];

if (import.meta.url === `file://${process.argv[1]}`) {
  await setUpE2E();
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
  const client = newClient();
  await client.launch(new Sandbox(BUSYBOX));
  try {
    const l = await measureStreamLayers(client, rounds);
    console.log(`\nexecStream of \`${STREAM_COMMAND}\`, median of ${rounds}`);
    for (const line of LAYER_HEADER) console.log(line);
    console.log(layerRow(process.env.MATCHLOCK_BACKEND ?? "auto", l));
  } finally {
    await client.close();
    await client.remove();
  }
}
