// Measurement helpers shared by the benchmarks: medians, percentiles, and the two SDK-level
// measures every engine is compared on (cold start and exec round trip).
import { Sandbox } from "../src/sdk/index.js";
import { BUSYBOX, newClient } from "../test/helpers/e2e.js";

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

export function p99(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.99))]!;
}

/** `launch()` of a busybox sandbox to the first `exec` result, `rounds` times (each closed and removed). */
export async function sdkColdStarts(rounds: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const client = newClient();
    const t = performance.now();
    await client.launch(new Sandbox(BUSYBOX));
    await client.exec("true");
    times.push(performance.now() - t);
    await client.close();
    await client.remove();
  }
  return times;
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
