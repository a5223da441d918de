// Undoes the content codings of an answer from a secret's host so its body can be scanned for
// the secret's value. The proxy asks such hosts for `identity`, but a server may compress
// anyway: gzip, deflate and br are decoded (the guest then gets the plain body without
// Content-Encoding); anything else cannot be scanned and is refused by the caller.
import type { Transform } from "node:stream";
import zlib from "node:zlib";

// A body that ends early (or is empty, as for HEAD and 204) ends the decoded stream where the
// data stops instead of failing it.
const ZLIB = { finishFlush: zlib.constants.Z_SYNC_FLUSH };
const BROTLI = { finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH };
const DECODERS: Record<string, () => Transform> = {
  gzip: () => zlib.createUnzip(ZLIB),
  "x-gzip": () => zlib.createUnzip(ZLIB),
  deflate: () => zlib.createUnzip(ZLIB), // zlib-wrapped, as RFC 9110 8.4.1.2 defines it
  br: () => zlib.createBrotliDecompress(BROTLI),
};
/** More layers than any real server sends: a guard against a header that lists hundreds. */
const MAX_LAYERS = 4;

/**
 * The decoders to pipe a body through, in order, for a Content-Encoding header (codings are
 * listed in the order they were applied, so they are undone from the last), or the coding
 * that cannot be decoded.
 */
export function contentDecoders(contentEncoding: string | undefined): Transform[] | { unsupported: string } {
  const codings = (contentEncoding ?? "").split(",").map((c) => c.trim().toLowerCase()).filter((c) => c && c !== "identity");
  if (codings.length > MAX_LAYERS) return { unsupported: `${codings.length} layers of content coding` };
  const unknown = codings.find((c) => !DECODERS[c]);
  if (unknown !== undefined) return { unsupported: unknown };
  return codings.reverse().map((c) => DECODERS[c]!());
}
