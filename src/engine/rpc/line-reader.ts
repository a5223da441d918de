// Splits a byte stream into newline-terminated lines without ever holding more than
// `maxLine` bytes of one line: a longer line is skipped to its end and reported as oversized,
// so one bad request costs an error reply, not the session.
import type { Readable } from "node:stream";

/** How much of the start and end of a skipped line is kept, to find its request id. */
const KEEP = 256;

export type LineEvent = { line: Buffer } | { oversized: number; head: string; tail: string };

export async function* readLines(input: Readable, maxLine: number): AsyncGenerator<LineEvent> {
  let parts: Buffer[] = [];
  let size = 0;
  let skipping: { size: number; head: string; tail: Buffer } | undefined;
  // destroyOnReturn false: a caller that stops early (the line after `close`) must not destroy
  // the stream, which on a socket would also cut the replies still being written.
  for await (const chunk of input.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(10, start);
      const end = nl === -1 ? chunk.length : nl;
      const piece = chunk.subarray(start, end);
      if (skipping) {
        skipping.size += piece.length;
        skipping.tail = Buffer.concat([skipping.tail, piece]).subarray(-KEEP);
      } else if (size + piece.length > maxLine) {
        const whole = Buffer.concat([...parts, piece]);
        skipping = { size: whole.length, head: whole.subarray(0, KEEP).toString("latin1"), tail: Buffer.from(whole.subarray(-KEEP)) };
        parts = [];
        size = 0;
      } else {
        parts.push(piece);
        size += piece.length;
      }
      if (nl === -1) break;
      if (skipping) {
        yield { oversized: skipping.size, head: skipping.head, tail: skipping.tail.toString("latin1") };
        skipping = undefined;
      } else {
        yield { line: parts.length === 1 ? parts[0]! : Buffer.concat(parts) };
        parts = [];
        size = 0;
      }
      start = nl + 1;
    }
  }
  // A last line without a trailing newline still counts.
  if (skipping) yield { oversized: skipping.size, head: skipping.head, tail: skipping.tail.toString("latin1") };
  else if (size > 0) yield { line: Buffer.concat(parts) };
}

/**
 * The request id of a line too long to parse, found in its first or last bytes (SDKs put `id`
 * before or after the large params), so the caller gets its error instead of waiting forever.
 */
export function idOfSkippedLine(head: string, tail: string): number | undefined {
  const pattern = /"id"\s*:\s*(\d{1,15})\s*[,}]/;
  const found = pattern.exec(head) ?? pattern.exec(tail);
  return found ? Number(found[1]) : undefined;
}
