// Reads request lines (at most `maxLine` bytes each; a longer one is reported as oversized) and
// hands them to the session one at a time, pausing while a handler asks to wait.
//
// Push-driven, not an async iterator: every request line of every exec passes here, and a
// stream's async iterator plus an async generator cost a chain of promises per line.
import { finished, type Readable } from "node:stream";
import { LineSplitter } from "../../protocol/line-splitter.js";

export type LineEvent = { line: Buffer } | { oversized: number; head: string; tail: string };

/** What a line handler returns: go on (undefined), wait for a promise first, or stop reading. */
export type LineVerdict = undefined | Promise<unknown> | typeof STOP_READING;

export const STOP_READING = Symbol("stop reading");

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
    let queue: LineEvent[] = [];
    const splitter = new LineSplitter((line) => queue.push({ line }), {
      maxLine,
      onOversized: ({ size, head, tail }) => queue.push({ oversized: size, head, tail }),
    });
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
      splitter.push(chunk);
      if (!waiting) drain();
    };
    input.on("data", onData);
    const stopWatching = finished(input, { writable: false }, (err) => {
      atEnd = true;
      endError = err ?? undefined;
      if (!err) splitter.end();
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
