// Delivers one exec_stream output stream to the caller's target. A Writable gets the bytes
// exactly as the command wrote them (Buffers: output may be binary). A callback gets text:
// chunks have no UTF-8 alignment (spec §2.3), so a StringDecoder carries partial characters
// over to the next chunk instead of turning them into U+FFFD.
//
// Back-pressure: when the target Writable says it is full (write() returns false), write()
// returns a promise that settles on 'drain'; the transport stops reading the engine until then,
// the engine stops reading the sandbox, and the command blocks. A slow consumer thus slows the
// command down instead of making the SDK buffer without bound.
import { StringDecoder } from "node:string_decoder";
import type { OutputTarget } from "./types.js";

export class OutputSink {
  /** Only for a callback target. */
  private readonly decoder: StringDecoder | undefined;
  private lastWrite: Promise<void> = Promise.resolve();
  /** The pending wait for 'drain', shared by every write made while the target is full. */
  private drain: Promise<void> | undefined;
  /** First failure of the caller's target; reported once the exec finishes. */
  error: unknown;

  constructor(private readonly target: OutputTarget | undefined) {
    if (typeof target === "function") this.decoder = new StringDecoder("utf8");
  }

  /** Undefined when the target can take more now; else a promise that settles when it can. */
  write(bytes: Buffer): Promise<void> | undefined {
    if (!this.target) return undefined;
    return this.emit(this.decoder ? this.decoder.write(bytes) : bytes);
  }

  /** Flushes a callback's trailing partial character (as U+FFFD) and waits until the target took every write. */
  async end(): Promise<void> {
    if (!this.target) return;
    if (this.decoder) this.emit(this.decoder.end());
    await this.lastWrite;
  }

  private emit(chunk: string | Buffer): Promise<void> | undefined {
    if (chunk.length === 0 || this.error !== undefined) return undefined;
    const target = this.target!;
    try {
      if (typeof target === "function") {
        target(chunk as string);
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
