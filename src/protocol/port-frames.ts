// Payloads of the port-forwarding frames (guest/agent/PROTOCOL.md, "Port forwarding").
import { AgentProtocolError } from "./agent-frames.js";

/** PORT_CONNECT: the guest port, and how many bytes the agent may send before our first credit. */
export function encodePortConnect(port: number, window: number): Buffer {
  if (!Number.isInteger(port) || port < 1 || port > 0xffff) throw new RangeError(`guest port must be 1-65535, got ${port}`);
  const payload = Buffer.allocUnsafe(6);
  payload.writeUInt16BE(port, 0);
  payload.writeUInt32BE(window, 2);
  return payload;
}

/** PORT_CREDIT either way: a byte count. */
export function encodeCredit(bytes: number): Buffer {
  const payload = Buffer.allocUnsafe(4);
  payload.writeUInt32BE(bytes, 0);
  return payload;
}

/** PORT_CONNECTED's window and PORT_CREDIT_OUT's bytes (from the guest: checked). */
export function decodeCredit(payload: Buffer): number {
  if (payload.length !== 4) throw new AgentProtocolError(`port credit payload must be 4 bytes, got ${payload.length}`);
  return payload.readUInt32BE(0);
}

/** PORT_CLOSE: 1 = abort (the guest peer gets a RST), 0 = plain close. */
export function encodePortClose(reset: boolean): Buffer {
  return Buffer.from([reset ? 1 : 0]);
}
