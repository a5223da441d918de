// A shortcut past JSON.parse for the one message that carries bulk data while a command runs:
// exec output (exec_stream, exec_pipe, exec_tty), in exactly the form our engine writes it (see
// Base64Data). Parsing a line of a few hundred KB of base64 with JSON.parse costs more than everything else the SDK
// does with it. Anything that is not exactly that form (another engine's key order, spaces,
// escapes) returns undefined, and the caller parses the line as usual: the result is the same
// either way (line-shape.ts does the matching, as for file chunks).
import { matchShape, shape } from "../protocol/line-shape.js";
import { Notification } from "../protocol/methods.js";

const SHAPES = [
  Notification.EXEC_STDOUT, Notification.EXEC_STDERR, Notification.PIPE_STDOUT, Notification.PIPE_STDERR, Notification.TTY_STDOUT,
].map((method) =>
  [shape(`{"jsonrpc":"2.0","method":"${method}","params":{"id":{int},"data":"{base64}"}}`), method] as const);

export interface OutputNotification {
  method: string;
  params: { id: number; data: string };
}

export function parseOutputNotification(line: Buffer): OutputNotification | undefined {
  for (const [s, method] of SHAPES) {
    const v = matchShape(line, s);
    if (v) return { method, params: { id: v[0] as number, data: (v[1] as Buffer).toString("latin1") } };
  }
  return undefined;
}
