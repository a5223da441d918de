// `matchlock rpc`: the engine process every SDK client starts. It imports only what serving
// needs, since every module loaded here is start-up time each sandbox's first call waits for.
import { serve } from "../engine/rpc/server.js";
import { traceStartup } from "../engine/trace/startup.js";
import { engineLog, prepareEngineProcess } from "./engine-process.js";

export async function runRpc(): Promise<void> {
  traceStartup("modules loaded");
  const { gc } = await prepareEngineProcess(engineLog);
  await serve({ input: process.stdin, output: process.stdout, log: engineLog });
  // A short session must not cut the reclaim short (a killed sandbox's cgroups can take seconds to go).
  await gc;
  process.exit(0);
}
