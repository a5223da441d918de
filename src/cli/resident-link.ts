// The CLI as a client of a resident engine (`matchlock serve`): `run -d` makes its sandbox there,
// `exec` reaches a sandbox there. The SDK's transport and handshake, over the engine's socket.
import { connectEngine } from "../sdk/engine-link.js";
import { shakeHands } from "../sdk/handshake.js";
import { Transport } from "../sdk/transport.js";
import { settings } from "../settings/settings.js";
import { paths } from "../engine/paths.js";

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
