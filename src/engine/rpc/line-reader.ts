// Splits a byte stream into newline-terminated lines without ever holding more than
// `maxLine` bytes of one line: a longer line is skipped to its end and reported as oversized,
// so one bad request costs an error reply, not the session.
//
// Push-driven, not an async iterator: every request line of every exec passes here, and a
// stream's async iterator plus an async generator cost a chain of promises per line (issue 8).
import { finished, type Readable } from "node:stream";

/** How much of the start and end of a skipped line is kept, to find its request id. */
const KEEP = 256;

export type LineEvent = { line: Buffer } | { oversized: number; head: string; tail: string };

/** What a line handler returns: go on (undefined), wait for a promise first, or stop reading. */
export type LineVerdict = undefined | Promise<unknown> | typeof STOP_READING;

export const STOP_READING = Symbol("stop reading");

/** The splitting itself, chunk by chunk; events are appended to `out`. */
export class LineSplitter {
  private parts: Buffer[] = [];
  private size = 0;
  private skipping: { size: number; head: string; tail: Buffer } | undefined;

  constructor(private readonly maxLine: number) {}

  push(chunk: Buffer, out: LineEvent[]): void {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(10, start);
      const end = nl === -1 ? chunk.length : nl;
      const piece = chunk.subarray(start, end);
      if (this.skipping) {
        this.skipping.size += piece.length;
        this.skipping.tail = Buffer.concat([this.skipping.tail, piece]).subarray(-KEEP);
      } else if (this.size + piece.length > this.maxLine) {
        const whole = Buffer.concat([...this.parts, piece]);
        this.skipping = { size: whole.length, head: whole.subarray(0, KEEP).toString("latin1"), tail: Buffer.from(whole.subarray(-KEEP)) };
        this.parts = [];
        this.size = 0;
      } else {
        this.parts.push(piece);
        this.size += piece.length;
      }
      if (nl === -1) break;
      this.emit(out);
      start = nl + 1;
    }
  }

  /** A last line without a trailing newline still counts. */
  end(out: LineEvent[]): void {
    if (this.skipping || this.size > 0) this.emit(out);
  }

  private emit(out: LineEvent[]): void {
    if (this.skipping) {
      out.push({ oversized: this.skipping.size, head: this.skipping.head, tail: this.skipping.tail.toString("latin1") });
      this.skipping = undefined;
    } else {
      out.push({ line: this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts) });
      this.parts = [];
      this.size = 0;
    }
  }
}

/**
 * Feeds `input`'s lines to `onLine`, one at a time and in order. While a promise it returned is
 * pending, reading pauses and later lines wait. Resolves at the end of the input or when
 * `onLine` returns STOP_READING; rejects when `onLine` throws, or as a stream's async iterator
 * would (an error, or ERR_STREAM_PREMATURE_CLOSE when the stream closes before its end).
 * Stopping leaves the stream alone (paused, not destroyed): on a socket, destroying it would
 * also cut the replies still being written.
 */
export function consumeLines(input: Readable, maxLine: number, onLine: (event: LineEvent) => LineVerdict): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const splitter = new LineSplitter(maxLine);
    let queue: LineEvent[] = [];
    let next = 0;
    let waiting = false;
    let atEnd = false;
    let endError: Error | undefined;
    let over = false;

    const finish = (err?: Error) => {
      if (over) return;
      over = true;
      input.off("data", onData);
      stopWatching();
      input.pause();
      if (err) reject(err);
      else resolve();
    };
    // Runs the queued lines until one asks to wait or to stop.
    const drain = () => {
      while (next < queue.length && !over) {
        let verdict: LineVerdict;
        try {
          verdict = onLine(queue[next++]!);
        } catch (err) {
          // It runs from stream events and promise reactions: a throw would escape them all.
          return finish(err instanceof Error ? err : new Error(String(err)));
        }
        if (verdict === STOP_READING) return finish();
        if (verdict) {
          waiting = true;
          input.pause();
          const goOn = () => {
            waiting = false;
            drain();
            if (!over && !waiting && !atEnd) input.resume();
          };
          verdict.then(goOn, goOn);
          return;
        }
      }
      queue = [];
      next = 0;
      if (atEnd) finish(endError); // like an iterator: the lines that did arrive are handled first
    };
    const onData = (chunk: Buffer) => {
      splitter.push(chunk, queue);
      if (!waiting) drain();
    };
    input.on("data", onData);
    const stopWatching = finished(input, { writable: false }, (err) => {
      atEnd = true;
      endError = err ?? undefined;
      if (!err) splitter.end(queue);
      if (!waiting) drain();
    });
  });
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
