// An upstream's answer as the guest may see it. From a secret's host every part of it is
// scanned, whatever the request carried (the host may hand back a value an earlier request
// stored there): the status text, header names and values, and the body, decoded first when
// the server compressed it. Scanning can change the body's length, so Content-Length goes
// (Node then frames the body chunked, or the caller closes after it).
import type { IncomingMessage } from "node:http";
import { pipeline, type Readable } from "node:stream";
import { contentDecoders } from "./content-decoding.js";
import { RedactStream, redactText } from "./redact-stream.js";
import type { Replacement } from "./stream-replace.js";

/** Headers that describe one connection, not the message: never passed on either way. */
export const HOP_BY_HOP = new Set([
  "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
  "te", "trailer", "transfer-encoding", "upgrade",
]);

export interface GuestAnswer {
  statusMessage: string;
  headers: Array<[string, string]>;
  body: Readable;
}

/**
 * The answer to pass on, with `redactions` applied (none: passed on as it came), its body
 * decoded also when `decode` (the interception rules may rewrite it); or, when the body is in
 * a coding the proxy cannot decode, which coding (the answer must then be refused).
 */
export function guestAnswer(up: IncomingMessage, redactions: Replacement[], decode = false): GuestAnswer | { unscannable: string } {
  const scan = redactions.length > 0;
  const decoders = scan || decode ? contentDecoders(up.headers["content-encoding"]) : [];
  if (!Array.isArray(decoders)) return { unscannable: `content coding ${decoders.unsupported}` };
  const headers: Array<[string, string]> = [];
  for (let i = 0; i + 1 < up.rawHeaders.length; i += 2) {
    const name = up.rawHeaders[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower)) continue;
    if ((scan || decoders.length) && lower === "content-length") continue;
    if (decoders.length && lower === "content-encoding") continue;
    headers.push([redactText(name, redactions), redactText(up.rawHeaders[i + 1]!, redactions)]);
  }
  const statusMessage = redactText(up.statusMessage ?? "", redactions);
  if (!scan && !decoders.length) return { statusMessage, headers, body: up };
  const steps = [...decoders, ...(scan ? [new RedactStream(redactions)] : [])];
  // Errors end up on the last stream (pipeline destroys every stream with them): the caller watches it.
  pipeline([up, ...steps], () => {});
  return { statusMessage, headers, body: steps.at(-1)! };
}
