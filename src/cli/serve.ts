// `matchlock serve`: the resident engine. SDK clients with Config.engineSocket (or
// MATCHLOCK_ENGINE_SOCKET) connect to it instead of starting an engine process each, which
// takes the engine's own start-up out of every sandbox's cold start.
import type { Command } from "commander";
import { resolve } from "node:path";
import { paths } from "../engine/paths.js";
import { ResidentServer } from "../engine/resident/resident-server.js";
import { engineLog, prepareEngineProcess } from "./engine-process.js";

export function registerServeCommand(program: Command): void {
  program
    .command("serve")
    .description("keep one engine running and serve the JSON-RPC protocol to many clients on a unix socket (owner-only)")
    .option("--socket <path>", `socket to listen on (default ${paths.engineSocket()})`)
    .action(async (opts: { socket?: string }) => {
      const socketPath = resolve(opts.socket ?? paths.engineSocket());
      // The socket first: a server that may not take it fails before touching any state.
      const server = await ResidentServer.start({ socketPath, log: engineLog });
      let gc: Promise<void> = Promise.resolve();
      const stopOn = (signal: NodeJS.Signals) => {
        void server.stop(`received ${signal}`).finally(async () => {
          await gc;
          process.exit(signal === "SIGINT" ? 130 : 143);
        });
      };
      process.once("SIGTERM", stopOn);
      process.once("SIGINT", stopOn);
      // `matchlock kill` of one of our sandboxes (installed before any can exist: SIGUSR2's
      // default would end the server and every sandbox with it).
      process.on("SIGUSR2", () => void server.stopRequested().catch((err: Error) => engineLog(`kill request failed: ${err.message}`)));
      ({ gc } = await prepareEngineProcess(engineLog));
      engineLog(`serving on ${socketPath} (pid ${process.pid})`);
    });
}
