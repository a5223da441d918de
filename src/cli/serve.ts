// `matchlock serve`: the resident engine. SDK clients with Config.engineSocket (or
// MATCHLOCK_ENGINE_SOCKET) connect to it instead of starting an engine process each, which
// takes the engine's own start-up out of every sandbox's cold start. The SDK's shared engine is
// one too, started by the SDK with --idle-exit and --notify-ready.
import { InvalidArgumentError, Option, type Command } from "commander";
import { resolve } from "node:path";
import { paths } from "../engine/paths.js";
import { ResidentServer } from "../engine/resident/resident-server.js";
import { engineLog, prepareEngineProcess } from "./engine-process.js";
import { settings } from "../settings/settings.js";

interface ServeOptions {
  socket?: string;
  idleExit?: number;
  notifyReady?: boolean;
}

function seconds(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError(`expected a number of seconds > 0, got ${JSON.stringify(value)}`);
  return n;
}

export function registerServeCommand(program: Command): void {
  program
    .command("serve")
    .description("keep one engine running and serve the JSON-RPC protocol to many clients on a unix socket (owner-only)")
    .option("--socket <path>", `socket to listen on (default ${paths.engineSocket()})`)
    .option("--idle-exit <seconds>", "exit once no client has been connected (and no detached sandbox has run) for this long (default: never)", seconds)
    // For the SDK that starts it: "ready" on stdout once it serves (stdout is then left alone).
    .addOption(new Option("--notify-ready").hideHelp())
    .action(async (opts: ServeOptions) => {
      const socketPath = resolve(opts.socket ?? paths.engineSocket());
      let gc: Promise<void> = Promise.resolve();
      const exit = (code: number) => void gc.finally(() => process.exit(code));
      const warmPool = settings.warmPool.read();
      if (warmPool !== "0" && warmPool !== "1") throw new Error(`MATCHLOCK_WARM_POOL must be 0 or 1, got ${JSON.stringify(warmPool)}`);
      // The socket first: a server that may not take it fails before touching any state.
      const server = await ResidentServer.start({
        socketPath, log: engineLog, warmPool: warmPool === "1",
        idleExitMs: opts.idleExit !== undefined ? opts.idleExit * 1000 : undefined,
        onRetired: () => exit(0),
      });
      const stopOn = (signal: NodeJS.Signals) => {
        void server.stop(`received ${signal}`).finally(() => exit(signal === "SIGINT" ? 130 : 143));
      };
      process.once("SIGTERM", stopOn);
      process.once("SIGINT", stopOn);
      // `matchlock kill` of one of our sandboxes (installed before any can exist: SIGUSR2's
      // default would end the server and every sandbox with it).
      process.on("SIGUSR2", () => void server.stopRequested().catch((err: Error) => engineLog(`kill request failed: ${err.message}`)));
      ({ gc } = await prepareEngineProcess(engineLog));
      engineLog(`serving on ${socketPath} (pid ${process.pid})`);
      if (opts.notifyReady) {
        process.stdout.on("error", () => undefined); // the starter may be gone already
        process.stdout.write("ready\n");
      }
    });
}
