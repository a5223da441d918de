// Base64 on the JSON-RPC wire, fast: file data crosses it in megabyte chunks, where a regular
// expression or JSON.stringify scanning every character costs more than the transfer itself.
import { isAscii } from "node:buffer";

/**
 * Decodes standard base64 (with padding), or returns undefined if `s` is not valid. Node's
 * decoder skips characters it does not know and accepts the URL alphabet, so validity is
 * checked by length: every skipped character makes the output shorter than `s` implies.
 */
export function decodeStrictBase64(s: string): Buffer | undefined {
  const size = strictDecodedSize(s.length, s.includes("-") || s.includes("_"), (i) => s.charCodeAt(i));
  if (size === undefined) return undefined;
  const out = Buffer.from(s, "base64");
  return out.length === size ? out : undefined;
}

/**
 * The number of bytes `length` characters of strict standard base64 decode to, or undefined
 * when the length, the URL alphabet or the padding already rule it out. A decode whose output
 * is shorter than this skipped a character Node's decoder does not know (or an inner "=").
 */
function strictDecodedSize(length: number, urlAlphabet: boolean, codeAt: (i: number) => number): number | undefined {
  if (length % 4 !== 0 || urlAlphabet) return undefined;
  let pad = 0;
  while (pad < length && codeAt(length - 1 - pad) === 61 /* = */) pad++;
  if (pad > 2) return undefined;
  return (length / 4) * 3 - pad;
}

/**
 * Base64 text moves through here in pieces of this many characters (a multiple of 4), never as
 * one string per chunk: a megabyte chunk's text as one string would be another 1.4 MB copy in
 * V8's large-object space, held until a major GC; pieces this small die young. (Measured: the
 * engine's major GCs come from its small default heap and stayed about as many; see docs/performance.md.)
 */
const PIECE_CHARS = 32 * 1024;
const PIECE_BYTES = (PIECE_CHARS / 4) * 3;

/**
 * Base64 text still in the bytes of the line it came in (see file-chunk-lines.ts), decoded
 * without ever being one string.
 */
export class Base64Text {
  constructor(readonly text: Buffer) {}

  /** The decoded bytes, or undefined if the text is not strict standard base64 (as decodeStrictBase64). */
  decode(): Buffer | undefined {
    const t = this.text;
    const n = t.length;
    const size = strictDecodedSize(n, t.includes(0x2d /* - */) || t.includes(0x5f /* _ */), (i) => t[i]!);
    if (size === undefined) return undefined;
    const out = Buffer.allocUnsafe(size);
    let at = 0;
    for (let off = 0; off < n; off += PIECE_CHARS) at += out.write(t.toString("latin1", off, Math.min(off + PIECE_CHARS, n)), at, "base64");
    return at === size ? out : undefined;
  }
}

/** Writes the base64 text of `bytes` into `out` at `at`, piece by piece; returns the end. */
function writeBase64(out: Buffer, at: number, bytes: Buffer): number {
  for (let off = 0; off < bytes.length; off += PIECE_BYTES) {
    at += out.write(bytes.toString("base64", off, Math.min(off + PIECE_BYTES, bytes.length)), at, "latin1");
  }
  return at;
}

/**
 * Bytes to be sent as a base64 JSON string. encodeJsonLine() copies their base64 text into the
 * line as is, instead of having JSON.stringify scan it for characters to escape (it has none).
 */
export class Base64Data {
  constructor(readonly bytes: Buffer) {}

  toJSON(): string {
    // Inside encodeJsonLine only a marker: the line gets the base64 text later, encoded once.
    if (capturing) {
      capturing.push(this.bytes);
      return SLOT;
    }
    return this.bytes.toString("base64");
  }
}

/** While encodeJsonLine runs JSON.stringify: where the Base64Data met so far put their bytes. */
let capturing: Buffer[] | undefined;

/** The text of a JSON line: latin1 decoding is a plain copy, and exact when the line is ASCII. */
export function lineText(line: Buffer): string {
  return isAscii(line) ? line.toString("latin1") : line.toString("utf8");
}

/** Marks where a Base64Data goes; JSON.stringify escapes the NULs, so no real string matches. */
const SLOT = "\u0000matchlock-base64\u0000";
const SLOT_JSON = JSON.stringify(SLOT);

/**
 * One NDJSON line for `message`, as a string, or as a Buffer when it holds Base64Data (whose
 * text is spliced in without a scan). Either way, the JSON is the same as JSON.stringify's.
 */
export function encodeJsonLine(message: object): string | Buffer {
  // JSON.stringify calls toJSON() before any replacer could see the Base64Data: a replacer
  // would get the base64 text after it was made, so toJSON() itself leaves the marker.
  const blobs: Buffer[] = [];
  let text: string;
  const outer = capturing; // a toJSON of the caller's may itself encode a line
  capturing = blobs;
  try {
    text = JSON.stringify(message);
  } finally {
    capturing = outer;
  }
  if (blobs.length === 0) return text + "\n";
  const parts = text.split(SLOT_JSON);
  // A string of the caller's that equals the marker: give up the shortcut (toJSON still works).
  if (parts.length !== blobs.length + 1) return JSON.stringify(message) + "\n";
  // One buffer of the exact size, each piece written into place: exec output crosses here at
  // hundreds of MB/s, where every extra copy of the base64 text shows.
  let size = 1;
  for (const part of parts) size += Buffer.byteLength(part, "utf8");
  for (const b of blobs) size += Math.ceil(b.length / 3) * 4 + 2;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  parts.forEach((part, i) => {
    at += out.write(part, at, "utf8");
    if (i < blobs.length) {
      out[at++] = 0x22; // "
      at = writeBase64(out, at, blobs[i]!);
      out[at++] = 0x22;
    }
  });
  out[at] = 0x0a;
  return out;
}
