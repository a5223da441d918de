// Measurement helpers shared by the benchmarks: medians, percentiles, and the two SDK-level
// measures every engine is compared on (cold start and exec round trip).
import { gvisorDriver } from "../src/engine/backends/gvisor/runsc.js";
import { createSandbox, engineCreateDeps, parseCreateParams } from "../src/engine/sandbox/create.js";
import { removeVmDir } from "../src/engine/sandbox/state.js";
import { Client, Sandbox, type Config } from "../src/sdk/index.js";
import { BUSYBOX, newClient } from "../test/helpers/e2e.js";

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
 * `launch()` of a busybox sandbox to the first `exec` result (then closed and removed), by a
 * client made with `config`: the default, an engine per client (`sharedEngine: false`), or a
 * resident engine (`engineSocket`).
 */
export async function sdkColdStart(config: Config = {}): Promise<ColdStart> {
  const client = new Client(config);
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

/**
 * Waits until the engines whose logs these are have ended `due` warm spare boots (booted, or not
 * made): a measure started then has no boot running beside it. Gives up after two minutes.
 */
export async function spareBootsEnded(logs: () => Promise<string[]>, due: number): Promise<void> {
  const ended = async () => (await logs()).reduce((n, log) => n + (log.match(/warm spare (vm-[0-9a-f]+ booted|not made)/g) ?? []).length, 0);
  for (const until = Date.now() + 120_000; (await ended()) < due && Date.now() < until;) await new Promise((r) => setTimeout(r, 20));
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

/** Round trips of `exec("true")`, the SDK's next to the agent's own, one pair at a time. */
export interface ExecPairs {
  sdk: number[];
  agent: number[];
}

/**
 * `execs` pairs of exec round trips on gVisor: SDK `exec("true")` (SDK -> JSON-RPC -> engine ->
 * agent and back) and then the same exec with no JSON-RPC, through the engine's own Sandbox
 * driven in this process. The second sandbox is made by the same code from the same create
 * params, so both send the agent the same frames (command, cwd, user, env) and boot with the
 * same mounts: only the SDK, the pipe and the engine process differ. One of each in turn,
 * because the load on a shared machine changes within milliseconds.
 */
export async function execRoundTripPairs(execs: number, warmUp = 50): Promise<ExecPairs> {
  const gvisor = async () => ({ driver: gvisorDriver, reason: "the exec bench measures gVisor" });
  const direct = await createSandbox(parseCreateParams({ image: BUSYBOX }), { ...engineCreateDeps(() => {}), chooseDriver: gvisor });
  const client = newClient();
  const sink = { stdout() {}, stderr() {} };
  try {
    await client.launch(new Sandbox(BUSYBOX));
    const viaSdk = () => client.exec("true");
    const viaAgent = () => direct.exec("true", {}, sink);
    for (let i = 0; i < warmUp; i++) await Promise.all([viaSdk(), viaAgent()]); // JIT, page cache
    const pairs: ExecPairs = { sdk: [], agent: [] };
    for (let i = 0; i < execs; i++) {
      pairs.sdk.push(await timed(1, viaSdk));
      pairs.agent.push(await timed(1, viaAgent));
    }
    return pairs;
  } finally {
    await client.close().catch(() => {});
    await client.remove().catch(() => {});
    await direct.close(2000).catch(() => {});
    await removeVmDir(direct.id).catch(() => {});
  }
}
