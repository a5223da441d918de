// Reads a JSON line of one exact, known shape without JSON.parse. File chunks cross the JSON-RPC
// wire as lines of about 1.4 MB, almost all base64 text; JSON.parse scans every character of
// it for escapes and copies it into a new string, and for bulk transfers that cost more than
// everything else on the path (measured: bench/files.ts, docs/performance.md "File transfer").
// A shape is a list of literal pieces and holes. A line that is not exactly that shape (other
// key order, spaces, escapes, huge numbers) gives undefined, and the caller parses it as usual:
// what the fast path accepts, JSON.parse reads the same way (but see "base64" below). One
// difference in errors only: a control character inside a base64 hole, which JSON.parse
// refuses as a parse error (-32700, no id), is refused by the strict base64 decoding instead
// (-32602 "invalid base64 content", with the id). Checking each byte here would cost more than
// the JSON.parse the shape saves (a regex over a 1.4 MB chunk: ~18 ms); either way it is refused.
import { isAscii } from "node:buffer";

/**
 * A hole in a shape: a non-negative integer, a boolean, or the text of a base64 string (any
 * ASCII without quotes or backslashes; the caller decodes it strictly, which refuses anything
 * else, including control characters that JSON.parse would refuse as a parse error).
 */
export type Hole = "int" | "bool" | "base64";
export type Shape = ReadonlyArray<Buffer | Hole>;
/** A "base64" hole's value is the text's bytes, a view into the line: no string is made. */
export type HoleValue = number | boolean | Buffer;

/** Integers in our shapes are ids, handles and offsets: longer digit runs take the slow path. */
const MAX_INT_DIGITS = 15;
const TRUE = Buffer.from("true");
const FALSE = Buffer.from("false");

/** Builds a shape from a template whose holes are written {int}, {bool} and {base64}. */
export function shape(template: string): Shape {
  const out: Array<Buffer | Hole> = [];
  for (const piece of template.split(/(\{int\}|\{bool\}|\{base64\})/)) {
    if (piece === "{int}" || piece === "{bool}" || piece === "{base64}") out.push(piece.slice(1, -1) as Hole);
    else if (piece !== "") out.push(Buffer.from(piece, "latin1"));
  }
  return out;
}

/**
 * The values of `line`'s holes in order, or undefined if the line is not exactly `s`. A "base64"
 * hole must sit inside quotes (the next piece starts with `"`); it takes no escapes.
 */
export function matchShape(line: Buffer, s: Shape): HoleValue[] | undefined {
  const values: HoleValue[] = [];
  let at = 0;
  for (let i = 0; i < s.length; i++) {
    const piece = s[i]!;
    if (piece instanceof Buffer) {
      if (!startsWith(line, piece, at)) return undefined;
      at += piece.length;
      continue;
    }
    if (piece === "int") {
      const start = at;
      while (at < line.length && line[at]! >= 0x30 && line[at]! <= 0x39) at++;
      const digits = at - start;
      if (digits === 0 || digits > MAX_INT_DIGITS || (digits > 1 && line[start] === 0x30)) return undefined;
      values.push(Number(line.toString("latin1", start, at)));
    } else if (piece === "bool") {
      if (startsWith(line, TRUE, at)) (values.push(true), (at += TRUE.length));
      else if (startsWith(line, FALSE, at)) (values.push(false), (at += FALSE.length));
      else return undefined;
    } else {
      const next = s[i + 1];
      if (!(next instanceof Buffer) || next[0] !== 0x22) throw new Error("a base64 hole must be followed by a closing quote");
      const end = line.indexOf(0x22, at); // base64 has no quotes: the first one closes the string
      if (end === -1) return undefined;
      const text = line.subarray(at, end);
      if (text.indexOf(0x5c) !== -1 || !isAscii(text)) return undefined; // escapes or UTF-8: not ours
      values.push(text);
      at = end;
    }
  }
  return at === line.length ? values : undefined;
}

function startsWith(line: Buffer, prefix: Buffer, at: number): boolean {
  return line.length >= at + prefix.length && line.compare(prefix, 0, prefix.length, at, at + prefix.length) === 0;
}
