// The engine's side of an agent channel whose agent is the test: what the engine sends, decoded.
import { PassThrough } from "node:stream";
import { AgentConnection } from "../../src/engine/agent/connection.js";
import { FrameType, encodeFrame } from "../../src/protocol/agent-frames.js";

export interface SentFrame {
  type: number;
  id: number;
  payload: Buffer;
}

export function fakeAgentChannel() {
  const toAgent = new PassThrough();
  const fromAgent = new PassThrough();
  const conn = new AgentConnection(toAgent, fromAgent);
  // What the engine sends (FrameDecoder reads only the agent's frame types): type, id, length, payload.
  const sent: SentFrame[] = [];
  let bytes = Buffer.alloc(0);
  toAgent.on("data", (chunk: Buffer) => {
    bytes = Buffer.concat([bytes, chunk]);
    while (bytes.length >= 9 && bytes.length >= 9 + bytes.readUInt32BE(5)) {
      const end = 9 + bytes.readUInt32BE(5);
      sent.push({ type: bytes[0]!, id: bytes.readUInt32BE(1), payload: bytes.subarray(9, end) });
      bytes = bytes.subarray(end);
    }
  });
  fromAgent.write(encodeFrame(FrameType.READY, 0, Buffer.from("test-agent")));
  /** The agent reports that operation `id` exited. */
  const exit = (id: number, code: number, signal = 0) => {
    const payload = Buffer.alloc(8);
    payload.writeInt32BE(code, 0);
    payload.writeInt32BE(signal, 4);
    fromAgent.write(encodeFrame(FrameType.EXIT, id, payload));
  };
  const signals = () => sent.filter((f) => f.type === FrameType.SIGNAL).map((f) => [f.id, f.payload[0]]);
  return { conn, fromAgent, sent, exit, signals };
}

/** Lets the streams deliver what was written. */
export const settle = () => new Promise((r) => setImmediate(r));
