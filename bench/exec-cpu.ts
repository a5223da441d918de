// CPU time per SDK exec("true"), split between this process (the SDK) and its `matchlock rpc`
// engine. Unlike round-trip times, CPU time per exec hardly moves with the machine's load, so it
// compares builds fairly on a busy machine (what the JSON-RPC hop costs).
import { readFile } from "node:fs/promises";
import { Sandbox } from "../src/sdk/index.js";
import { BUSYBOX, CLI, newClient } from "../test/helpers/e2e.js";
import { descendants } from "./engine-load.js";

export interface ExecCpu {
  /** Microseconds of CPU per exec, user and system. */
  engine: { user: number; system: number };
  sdk: { user: number; system: number };
}

const TICK_US = 10_000; // USER_HZ is 100 on Linux

/** utime and stime of `pid`, in microseconds. */
async function cpuOf(pid: number): Promise<{ user: number; system: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: Number(fields[11]) * TICK_US, system: Number(fields[12]) * TICK_US };
}

export async function execCpu(execs: number, warmUp = 100): Promise<ExecCpu> {
  const client = newClient();
  try {
    await client.launch(new Sandbox(BUSYBOX));
    const engine = (await descendants()).find((p) => p.args.includes(CLI) && p.args.endsWith(" rpc"));
    if (!engine) throw new Error("the SDK's matchlock rpc process was not found among this process's children");
    for (let i = 0; i < warmUp; i++) await client.exec("true");
    const engine0 = await cpuOf(engine.pid);
    const sdk0 = process.cpuUsage();
    for (let i = 0; i < execs; i++) await client.exec("true");
    const sdk = process.cpuUsage(sdk0);
    const engine1 = await cpuOf(engine.pid);
    return {
      engine: { user: (engine1.user - engine0.user) / execs, system: (engine1.system - engine0.system) / execs },
      sdk: { user: sdk.user / execs, system: sdk.system / execs },
    };
  } finally {
    await client.close().catch(() => {});
    await client.remove().catch(() => {});
  }
}
