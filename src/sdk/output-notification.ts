// A shortcut past JSON.parse for the one message that carries bulk data while a command runs:
// exec_stream output, in exactly the form our engine writes it (see Base64Data). Parsing a
// line of a few hundred KB of base64 with JSON.parse costs more than everything else the SDK
// does with it; here the base64 text is taken out of the line with two native scans.
// Anything that is not exactly that form (another engine's key order, spaces, escapes) returns
// undefined, and the caller parses the line as usual: the result is the same either way.
import { isAscii } from "node:buffer";
import { Notification } from "../protocol/rpc.js";

const HEAD = Buffer.from('{"jsonrpc":"2.0","method":"exec_stream.std', "latin1");
const STREAMS: Array<[Buffer, string]> = [
  [Buffer.from('out","params":{"id":', "latin1"), Notification.EXEC_STDOUT],
  [Buffer.from('err","params":{"id":', "latin1"), Notification.EXEC_STDERR],
];
const DATA_KEY = Buffer.from(',"data":"', "latin1");
const TAIL = Buffer.from('"}}', "latin1");
/** Request ids the SDK sends are small integers; longer digit runs take the ordinary path. */
const MAX_ID_DIGITS = 15;

export interface OutputNotification {
  method: string;
  params: { id: number; data: string };
}

export function parseOutputNotification(line: Buffer): OutputNotification | undefined {
  if (!startsWith(line, HEAD, 0)) return undefined;
  const stream = STREAMS.find(([rest]) => startsWith(line, rest, HEAD.length));
  if (!stream) return undefined;
  let at = HEAD.length + stream[0].length;
  const idStart = at;
  while (at < line.length && line[at]! >= 0x30 && line[at]! <= 0x39) at++;
  const digits = at - idStart;
  if (digits === 0 || digits > MAX_ID_DIGITS || (digits > 1 && line[idStart] === 0x30)) return undefined;
  const id = Number(line.toString("latin1", idStart, at));
  if (!startsWith(line, DATA_KEY, at)) return undefined;
  const dataStart = at + DATA_KEY.length;
  const dataEnd = line.length - TAIL.length;
  if (dataEnd < dataStart || !startsWith(line, TAIL, dataEnd)) return undefined;
  const data = line.subarray(dataStart, dataEnd);
  // A quote or backslash inside, or a non-ASCII byte, means JSON escapes or another shape.
  if (data.indexOf(0x22) !== -1 || data.indexOf(0x5c) !== -1 || !isAscii(data)) return undefined;
  return { method: stream[1], params: { id, data: data.toString("latin1") } };
}

function startsWith(line: Buffer, prefix: Buffer, at: number): boolean {
  return line.length >= at + prefix.length && line.compare(prefix, 0, prefix.length, at, at + prefix.length) === 0;
}
