// What a guest's first bytes on a sniffed port are. Raw relay (unchecked, any Host) is only for
// bytes that cannot be the start of an HTTP request or a TLS record, so anything an HTTP server
// could parse as a request goes through the proxy and its checks. Servers skip empty lines (and
// lenient ones blanks) before a request line, accept methods they do not know, and read HTTP/0.9
// ("GET /path" with no version); so a request is: optional CR/LF/SP/HT, a token, a blank, then
// either a known method or a first line that names HTTP/. While the bytes so far could still
// become that (a method arriving one byte at a time, a long first line), the answer is "more",
// with no time limit: a slow sender must not be taken for a raw one.

export type Sniffed = "tls" | "http" | "raw" | "more";

/** Undecided after this many bytes: sent to the proxy, whose parser refuses an overlong line. */
export const MAX_SNIFF_BYTES = 16 * 1024;

const KNOWN_METHODS = new Set([
  "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "PROPFIND", "PROPPATCH",
  "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "PURGE", "SEARCH", "REPORT", "PRI",
]);

const TLS_HANDSHAKE = 0x16;
const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HT = 0x09;

/** RFC 9110 tchar: what a method token is made of. */
function isTchar(b: number): boolean {
  return (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(b));
}

const isBlank = (b: number) => b === CR || b === LF || b === SP || b === HT;
/** A byte no request line carries: a control character other than HT, or DEL. */
const isControl = (b: number) => (b < 0x20 && b !== HT) || b === 0x7f;

/** What the first bytes of a client's stream are; "more" while they could still be a request or a record. */
export function sniff(first: Buffer): Sniffed {
  if (first.length === 0) return "more";
  if (first[0] === TLS_HANDSHAKE) return "tls";
  const verdict = requestLine(first);
  return verdict === "more" && first.length >= MAX_SNIFF_BYTES ? "http" : verdict;
}

/**
 * The verdict once the client has half-closed: nothing sent is raw (a client that only listens);
 * bytes still undecided go to the proxy, whose parser refuses the incomplete request.
 */
export function sniffAtEnd(first: Buffer): Exclude<Sniffed, "more"> {
  const kind = sniff(first);
  if (kind !== "more") return kind;
  return first.length === 0 ? "raw" : "http";
}

function requestLine(b: Buffer): Sniffed {
  let i = 0;
  while (i < b.length && isBlank(b[i]!)) i++;
  if (i === b.length) return "more";
  const start = i;
  while (i < b.length && isTchar(b[i]!)) i++;
  if (i === start) return "raw"; // no method token
  if (i === b.length) return "more"; // the token may go on
  if (b[i] !== SP && b[i] !== HT) return "raw"; // a token not followed by a blank is no method
  if (KNOWN_METHODS.has(b.toString("latin1", start, i).toUpperCase())) return "http";
  let end = i;
  while (end < b.length && b[end] !== CR && b[end] !== LF) end++;
  const line = b.toString("latin1", start, end);
  if (/HTTP\//i.test(line)) return "http";
  if ([...b.subarray(start, end)].some(isControl)) return "raw";
  return end < b.length ? "raw" : "more";
}

/** Do a server's first bytes start (or begin to start) an HTTP response? */
export function isHttpResponse(first: Buffer): boolean {
  const head = first.toString("latin1", 0, 5);
  return head.length > 0 && "HTTP/".startsWith(head);
}
