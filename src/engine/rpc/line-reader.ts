// Splits a byte stream into newline-terminated lines without ever holding more than
// `maxLine` bytes of one line: a longer line is skipped to its end and reported as oversized,
// so one bad request costs an error reply, not the session.
import type { Readable } from "node:stream";

export type LineEvent = { line: Buffer } | { oversized: number };

export async function* readLines(input: Readable, maxLine: number): AsyncGenerator<LineEvent> {
  let parts: Buffer[] = [];
  let size = 0;
  let skipping = false;
  let skipped = 0;
  for await (const chunk of input as AsyncIterable<Buffer>) {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(10, start);
      const end = nl === -1 ? chunk.length : nl;
      const piece = chunk.subarray(start, end);
      if (skipping) {
        skipped += piece.length;
      } else if (size + piece.length > maxLine) {
        skipping = true;
        skipped = size + piece.length;
        parts = [];
        size = 0;
      } else {
        parts.push(piece);
        size += piece.length;
      }
      if (nl === -1) break;
      if (skipping) {
        yield { oversized: skipped };
        skipping = false;
        skipped = 0;
      } else {
        yield { line: parts.length === 1 ? parts[0]! : Buffer.concat(parts) };
        parts = [];
        size = 0;
      }
      start = nl + 1;
    }
  }
  // A last line without a trailing newline still counts.
  if (skipping) yield { oversized: skipped };
  else if (size > 0) yield { line: Buffer.concat(parts) };
}
