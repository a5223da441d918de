// The CLI as a client of a resident engine (`matchlock serve`): `run -d` makes its sandbox there,
// `exec` and `allow-list` reach a sandbox there (or in a foreground `matchlock run`). The SDK's
// transport and handshake, over the engine's socket.
import { connectEngine } from "../sdk/engine-link.js";
import { shakeHands } from "../sdk/handshake.js";
import { Transport } from "../sdk/transport.js";
import { settings } from "../settings/settings.js";
import { paths } from "../engine/paths.js";
import { ownerAlive, ownerSocket, readVm } from "../engine/sandbox/state.js";

/** The engine `run -d` uses: $MATCHLOCK_ENGINE_SOCKET, else where `matchlock serve` listens by default. */
export function residentSocket(): string {
  return settings.engineSocket.read() || paths.engineSocket();
}

export async function openResident(socketPath: string): Promise<Transport> {
  const transport = new Transport(() => connectEngine(socketPath));
  await transport.start();
  try {
    await shakeHands(transport, socketPath);
  } catch (err) {
    await transport.shutdown(0);
    throw err;
  }
  return transport;
}

/**
 * The socket of the engine that runs sandbox `id` and serves `attach` for it (the resident
 * engine's, a foreground `matchlock run`'s), or why `what` cannot reach it.
 */
export async function engineOf(id: string, what: string): Promise<string> {
  const vm = await readVm(id);
  if (!vm) throw new Error(`VM ${id} not found`);
  if (vm.status !== "running" || !(await ownerAlive(vm))) throw new Error(`VM ${id} is not running (status: ${vm.status === "running" ? "crashed" : vm.status})`);
  const socket = await ownerSocket(id);
  if (!socket) {
    throw new Error(`VM ${id} runs in an engine that serves only the client that started it (pid ${vm.pid}: an SDK client's \`matchlock rpc\`): ` +
      `${what} reaches the sandboxes of \`matchlock run\` (-d or not) and of the resident engine (\`matchlock serve\`)`);
  }
  return socket;
}
