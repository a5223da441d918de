// Delivers one exec_stream output stream to the caller's target: a Writable or a callback gets
// the bytes exactly as the command wrote them, as Buffers (output may be binary, and chunks have
// no UTF-8 alignment: spec §2.3), as upstream's SDK hands them over. A callback is not awaited.
//
// Back-pressure: when the target Writable says it is full (write() returns false), write()
// returns a promise that settles on 'drain'; the transport stops reading the engine until then,
// the engine stops reading the sandbox, and the command blocks. A slow consumer thus slows the
// command down instead of making the SDK buffer without bound.
import type { OutputTarget } from "./types.js";

export class OutputSink {
  private lastWrite: Promise<void> = Promise.resolve();
  /** The pending wait for 'drain', shared by every write made while the target is full. */
  private drain: Promise<void> | undefined;
  /** First failure of the caller's target; reported once the exec finishes. */
  error: unknown;

  constructor(private readonly target: OutputTarget | undefined) {}

  /** Undefined when the target can take more now; else a promise that settles when it can. */
  write(bytes: Buffer): Promise<void> | undefined {
    if (!this.target) return undefined;
    return this.emit(bytes);
  }

  /** Waits until the target took every write. */
  async end(): Promise<void> {
    if (!this.target) return;
    await this.lastWrite;
  }

  private emit(chunk: Buffer): Promise<void> | undefined {
    if (chunk.length === 0 || this.error !== undefined) return undefined;
    const target = this.target!;
    try {
      if (typeof target === "function") {
        const called: unknown = target(chunk);
        // Not awaited (upstream's rule); a promise it returns must not reject unseen.
        if (called instanceof Promise) called.catch((err) => (this.error ??= err));
        return undefined;
      }
      // Write callbacks run in order, so waiting for the last one means all were flushed.
      let hasRoom = true;
      this.lastWrite = new Promise((resolve) => {
        hasRoom = target.write(chunk, (err?: Error | null) => {
          if (err && this.error === undefined) this.error = err;
          resolve();
        });
      });
      if (hasRoom) return undefined;
      this.drain ??= drained(target).finally(() => (this.drain = undefined));
      return this.drain;
    } catch (err) {
      this.error = err;
      return undefined;
    }
  }
}

/** Settles on 'drain', or when the stream ends or fails (then there is nothing to wait for). */
function drained(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      for (const e of ["drain", "close", "error", "finish"]) stream.removeListener(e, done);
      resolve();
    };
    for (const e of ["drain", "close", "error", "finish"]) stream.once(e, done);
  });
}
