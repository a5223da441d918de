// `matchlock port-forward ID [LOCAL:]REMOTE...`: forwards host ports to a sandbox that a
// resident engine (`matchlock serve`) runs, until interrupted or until the sandbox stops. The
// engine listens; this command holds the session the listeners belong to, so they end with it.
import type { Command } from "commander";
import { setTimeout as sleep } from "node:timers/promises";
import { paths } from "../engine/paths.js";
import { ownerAlive, readVm } from "../engine/sandbox/state.js";
import { Method } from "../protocol/methods.js";
import { describeBinding, parsePortSpec, toWireForwards, type WirePortBinding } from "../protocol/port-forward.js";
import { connectEngine } from "../sdk/engine-link.js";
import { shakeHands } from "../sdk/handshake.js";
import { Transport } from "../sdk/transport.js";
import { settings } from "../settings/settings.js";
import { collect } from "./options.js";

/** How often the sandbox's record is looked at, to end when the sandbox stops. */
const WATCH_MS = 500;

export function registerPortForwardCommand(program: Command): void {
  program
    .command("port-forward")
    .description("forward host ports to a sandbox of the resident engine (`matchlock serve`) until interrupted")
    .argument("<id>", "sandbox id (vm-xxxxxxxx)")
    .argument("<specs...>", "[LOCAL:]REMOTE: host port LOCAL to the guest's 127.0.0.1:REMOTE (one number: the same port)")
    .option("--address <ip>", "host address to listen on (repeatable; default 127.0.0.1)", collect, [])
    .option("--socket <path>", "the resident engine's socket (default $MATCHLOCK_ENGINE_SOCKET, else its default path)")
    .action(async (id: string, specs: string[], opts: { address: string[]; socket?: string }) => {
      const forwards = specs.map(parsePortSpec);
      const vm = await readVm(id);
      if (!vm) throw new Error(`VM ${id} not found`);
      if (vm.status !== "running" || !(await ownerAlive(vm))) throw new Error(`VM ${id} is not running`);
      const socket = opts.socket ?? settings.engineSocket.read() ?? paths.engineSocket();
      const transport = new Transport(() => connectEngine(socket));
      await transport.start();
      const stop = async (code: number) => {
        await transport.shutdown(2000);
        process.exit(code);
      };
      process.once("SIGINT", () => void stop(130));
      process.once("SIGTERM", () => void stop(143));
      try {
        if (!(await shakeHands(transport, socket))) throw new Error(`the engine at ${socket} is not this matchlock's resident engine`);
        const result = await transport.request(Method.PORT_FORWARD, {
          vm_id: id, forwards: toWireForwards(forwards), ...(opts.address.length > 0 ? { addresses: opts.address } : {}),
        });
        for (const b of (result.bindings ?? []) as WirePortBinding[]) process.stderr.write(`${describeBinding(b)}\n`);
      } catch (err) {
        await transport.shutdown(2000);
        throw err;
      }
      // Runs until interrupted (the signal handlers end the session), the sandbox stops, or the engine goes.
      for (;;) {
        await sleep(WATCH_MS);
        const now = await readVm(id);
        if (!transport.running) {
          process.stderr.write("matchlock: the engine closed the session\n");
          return stop(1);
        }
        if (!now || now.status !== "running" || !(await ownerAlive(now))) {
          process.stderr.write(`matchlock: ${id} stopped\n`);
          return stop(0);
        }
      }
    });
}
