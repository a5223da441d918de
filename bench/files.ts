// File transfer throughput: SDK writeFile/readFile of 1 KB, 1 MB and 100 MB against native
// writes and reads of the same data on the host's file system, and against the agent channel
// alone (no JSON-RPC), measured in one run. Prints medians and ratios.
//   npm run bench:files      (MATCHLOCK_BACKEND=gvisor|microvm; needs root and the local images)
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { AgentReadStream, AgentWriteStream } from "../src/engine/agent/file-streams.js";
import { chooseDriver } from "../src/engine/backends/registry.js";
import { ImageStore } from "../src/engine/image/store.js";
import { Sandbox } from "../src/sdk/index.js";
import { BACKEND, BUSYBOX, newClient, setUpE2E } from "../test/helpers/e2e.js";
import { timed } from "./measure.js";
import { timeInSandbox } from "./stream-layers.js";

const SIZES: Array<[string, number, number]> = [
  // label, bytes, rounds
  ["1 KB", 1000, Number(process.env.BENCH_SMALL_ROUNDS ?? 30)],
  ["1 MB", 1000 * 1000, Number(process.env.BENCH_MEDIUM_ROUNDS ?? 15)],
  ["100 MB", 100 * 1000 * 1000, Number(process.env.BENCH_LARGE_ROUNDS ?? 3)],
];
const GUEST_FILE = "/tmp/bench.bin";

/** The same transfers driven in-process over the agent channel, without JSON-RPC or base64. */
async function agentOnly(rootfs: string, work: string, data: Buffer, rounds: number): Promise<{ write: number; read: number }> {
  const { driver: backend } = await chooseDriver();
  const id = "vm-fbench" + String(Date.now() % 10000).padStart(4, "0");
  const stateDir = join(work, id);
  await mkdir(stateDir, { recursive: true });
  const sandbox = await backend.start({
    id, image: { kind: "unpacked", ref: id, rootfs }, cpus: 1, memoryMb: 512, diskSizeMb: 1024, hostname: id, privileged: false, mounts: [], stateDir, logFile: join(stateDir, "log"),
  });
  try {
    const write = await timed(rounds, async () => {
      const w = await AgentWriteStream.open(sandbox.agent, GUEST_FILE, 0o644);
      for (let off = 0; off < data.length; off += 1 << 20) await w.write(data.subarray(off, off + (1 << 20)));
      await w.commit();
    });
    const read = await timed(rounds, async () => {
      const r = await AgentReadStream.open(sandbox.agent, GUEST_FILE);
      while (!(await r.next(1 << 20)).eof);
    });
    return { write, read };
  } finally {
    await sandbox.stop(2000);
  }
}

async function main(): Promise<void> {
  await setUpE2E();
  const image = await new ImageStore().resolve(BUSYBOX);
  if (!image) throw new Error(`${BUSYBOX} is not imported`);
  const work = await mkdtemp(join(tmpdir(), "matchlock-fbench-"));
  const client = newClient();
  await client.launch(new Sandbox(BUSYBOX));
  const rows: string[] = [];
  try {
    for (const [label, size, rounds] of SIZES) {
      const data = randomBytes(size);
      const hostFile = join(work, "native.bin");
      const nativeWrite = await timed(rounds, () => writeFile(hostFile, data));
      const nativeRead = await timed(rounds, () => readFile(hostFile));
      const sdkWrite = await timed(rounds, () => client.writeFile(GUEST_FILE, data));
      const sdkRead = await timed(rounds, () => client.readFile(GUEST_FILE));
      const back = await client.readFile(GUEST_FILE);
      if (!back.equals(data)) throw new Error(`${label}: the file read back differs`);
      const large = size >= 1e8;
      const agent = large ? await agentOnly(image.rootfs, work, data, rounds) : undefined;
      // What the sandbox's own file system costs: the same bytes copied by dd inside it.
      const inside = large
        ? {
            write: await timeInSandbox(client, `dd if=/dev/zero of=/tmp/dd.bin bs=1000000 count=${size / 1e6} 2>/dev/null`),
            read: await timeInSandbox(client, `dd if=${GUEST_FILE} of=/dev/null bs=1000000 2>/dev/null`),
          }
        : undefined;
      if (large) await client.exec("rm -f /tmp/dd.bin");
      const mbps = (ms: number) => (size / 1e6 / (ms / 1000)).toFixed(1);
      const cell = (ms: number | undefined, native: number) => (ms === undefined ? "" : `${ms.toFixed(0)} (${mbps(ms)} MB/s, ${(ms / native).toFixed(1)}x)`);
      const row = (what: string, ours: number, native: number, agentMs?: number, insideMs?: number) =>
        `| ${what} ${label} | ${ours.toFixed(2)} (${mbps(ours)} MB/s) | ${native.toFixed(2)} | ${(ours / native).toFixed(1)}x | ${cell(agentMs, native)} | ${cell(insideMs, native)} |`;
      rows.push(row("writeFile", sdkWrite, nativeWrite, agent?.write, inside?.write), row("readFile", sdkRead, nativeRead, agent?.read, inside?.read));
      await rm(hostFile, { force: true });
    }
  } finally {
    await client.close();
    await client.remove();
    await rm(work, { recursive: true, force: true });
  }
  console.log(`machine: ${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, node ${process.version}; engine ${BACKEND}; guest file ${GUEST_FILE}`);
  console.log("| transfer | SDK median ms | native fs median ms | ratio | agent channel alone, median ms (ratio to native) | dd inside the sandbox, ms (ratio) |");
  console.log("|---|---:|---:|---:|---:|---:|");
  for (const r of rows) console.log(r);
}

await main();
