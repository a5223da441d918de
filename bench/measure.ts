// Measurement helpers shared by the benchmarks: medians, percentiles, and the two SDK-level
// measures every engine is compared on (cold start and exec round trip).
import { Client, Sandbox } from "../src/sdk/index.js";
import { BUSYBOX, CLI, newClient } from "../test/helpers/e2e.js";

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Median time of `rounds` sequential runs of `op`, in ms. */
export async function timed(rounds: number, op: () => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    await op();
    times.push(performance.now() - t);
  }
  return median(times);
}

export function p99(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.99))]!;
}

/** One cold start's parts: engine start (spawn or connect), `create` reply, first `exec` reply. */
export interface ColdStart {
  total: number;
  engine: number;
  create: number;
  exec: number;
}

/**
 * `launch()` of a busybox sandbox to the first `exec` result (then closed and removed). With
 * `engineSocket`, through a resident engine (`matchlock serve`) instead of an engine per client.
 */
export async function sdkColdStart(engineSocket?: string): Promise<ColdStart> {
  const client = engineSocket ? new Client({ binaryPath: CLI, engineSocket }) : newClient();
  const t0 = performance.now();
  await client.start(); // launch() would do it; done here only to time it apart
  const t1 = performance.now();
  await client.launch(new Sandbox(BUSYBOX));
  const t2 = performance.now();
  await client.exec("true");
  const t3 = performance.now();
  await client.close();
  await client.remove();
  return { total: t3 - t0, engine: t1 - t0, create: t2 - t1, exec: t3 - t2 };
}

/** `execs` sequential `exec("true")` round trips on one sandbox; `during` runs while it still lives. */
export async function sdkExecRoundTrips(execs: number, during?: (vmId: string) => Promise<void>): Promise<number[]> {
  const client = newClient();
  await client.launch(new Sandbox(BUSYBOX));
  try {
    const times: number[] = [];
    for (let i = 0; i < execs; i++) {
      const t = performance.now();
      await client.exec("true");
      times.push(performance.now() - t);
    }
    await during?.(client.vmId!);
    return times;
  } finally {
    await client.close();
    await client.remove();
  }
}
