// One exchange with an SDK-side callback (spec 5.7): connect to the callback socket, write one
// JSON line, read one JSON line back. The callback runs in the SDK's process, so it is held to
// a deadline and a size: a slow or hostile one costs its own request that much, never the proxy.
import net from "node:net";

/** Largest reply read (a replaced body travels in it, base64). */
export const MAX_HOOK_REPLY_BYTES = 16 * 1024 * 1024;

export class HookCallError extends Error {}

/** The callback's parsed reply; rejects with HookCallError on a timeout, a connection error, an oversized or unparsable reply. */
export function callHook(socketPath: string, request: object, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(socketPath);
    const parts: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (err: Error | undefined, value?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(() => finish(new HookCallError(`no answer within ${timeoutMs} ms`)), timeoutMs);
    const parse = () => {
      const text = Buffer.concat(parts).toString("utf8").trim();
      if (!text) return finish(new HookCallError("the callback closed the connection without an answer"));
      try {
        finish(undefined, JSON.parse(text));
      } catch {
        finish(new HookCallError("the callback's answer is not JSON"));
      }
    };
    socket.on("error", (err) => finish(new HookCallError(`callback socket: ${err.message}`)));
    socket.on("data", (d: Buffer) => {
      const nl = d.indexOf(10);
      const piece = nl >= 0 ? d.subarray(0, nl) : d;
      size += piece.length;
      if (size > MAX_HOOK_REPLY_BYTES) return finish(new HookCallError(`the callback's answer exceeds ${MAX_HOOK_REPLY_BYTES} bytes`));
      parts.push(piece);
      if (nl >= 0) parse();
    });
    socket.on("end", parse);
    socket.write(JSON.stringify(request) + "\n");
  });
}
