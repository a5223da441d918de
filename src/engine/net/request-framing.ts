// How a guest's request body is delimited, decided before anything goes upstream, so that no
// byte of a body can be read by the upstream as a second request the proxy never checked
// (request smuggling). Node's parser, run strict (insecureHTTPParser off), already refuses
// obs-fold, bare LF, Transfer-Encoding with Content-Length, duplicate or malformed
// Content-Length and codings that do not end in chunked; these checks refuse what it still lets
// through, and the proxy then frames the body upstream explicitly (Content-Length as received,
// or chunked), never leaving it to Node's per-method defaults.
import type { IncomingMessage } from "node:http";

export type Framing = { body: "none" | "length" | "chunked" } | { refused: string };

/**
 * Methods whose requests servers commonly read as bodiless: a chunked body on one could be
 * taken for the next request on the connection. A Content-Length body is still passed on.
 */
const BODILESS_BY_CUSTOM = new Set(["GET", "HEAD", "DELETE", "OPTIONS", "TRACE"]);

export function requestFraming(req: Pick<IncomingMessage, "method" | "httpVersion" | "rawHeaders">, upgrade: boolean): Framing {
  const te: string[] = [];
  const cl: string[] = [];
  let hosts = 0;
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!.toLowerCase();
    if (name === "transfer-encoding") te.push(req.rawHeaders[i + 1]!);
    else if (name === "content-length") cl.push(req.rawHeaders[i + 1]!);
    else if (name === "host") hosts++;
  }
  // Node keeps the first Host; a server behind may take another one.
  if (hosts > 1) return { refused: "more than one Host header" };
  if (te.length && cl.length) return { refused: "both Transfer-Encoding and Content-Length" };
  if (cl.length > 1) return { refused: "more than one Content-Length header" };
  if (te.length) {
    if (te.length > 1 || te[0]!.trim().toLowerCase() !== "chunked") {
      return { refused: `Transfer-Encoding ${JSON.stringify(te.join(", "))} (only a single "chunked" is passed on)` };
    }
    if (req.httpVersion !== "1.1") return { refused: `Transfer-Encoding in an HTTP/${req.httpVersion} request` };
    const method = req.method ?? "";
    if (BODILESS_BY_CUSTOM.has(method)) return { refused: `a chunked body on a ${method} request (servers disagree on whether it has one)` };
    if (upgrade) return { refused: "a body on an upgrade request" };
    return { body: "chunked" };
  }
  if (cl.length) {
    if (!/^[0-9]+$/.test(cl[0]!.trim())) return { refused: `Content-Length ${JSON.stringify(cl[0])}` };
    if (Number(cl[0]) > 0) return upgrade ? { refused: "a body on an upgrade request" } : { body: "length" };
  }
  return { body: "none" };
}

/** What to tell the guest when Node's parser refused its bytes; undefined: nothing to say (the connection is gone). */
export function parserErrorReply(err: Error & { code?: string; reason?: string }): { status: number; message: string } | undefined {
  if (err.code === "HPE_HEADER_OVERFLOW") return { status: 431, message: "request headers too large" };
  if (err.code === "ERR_HTTP_REQUEST_TIMEOUT") return { status: 408, message: "request not received in time" };
  if (err.code?.startsWith("HPE_")) return { status: 400, message: err.reason || err.message };
  return undefined;
}
