// Delivers one exec_stream output stream to the caller's target as text. Chunks have no
// UTF-8 alignment (spec §2.3), so a StringDecoder carries partial characters over to the
// next chunk instead of turning them into U+FFFD.
import { StringDecoder } from "node:string_decoder";
import type { OutputTarget } from "./types.js";

export class OutputSink {
  private readonly decoder = new StringDecoder("utf8");
  private lastWrite: Promise<void> = Promise.resolve();
  /** First failure of the caller's target; reported once the exec finishes. */
  error: unknown;

  constructor(private readonly target: OutputTarget | undefined) {}

  write(bytes: Buffer): void {
    if (this.target) this.emit(this.decoder.write(bytes));
  }

  /** Flushes a trailing partial character (as U+FFFD) and waits until the target took every write. */
  async end(): Promise<void> {
    if (!this.target) return;
    this.emit(this.decoder.end());
    await this.lastWrite;
  }

  private emit(text: string): void {
    if (text === "" || this.error !== undefined) return;
    const target = this.target!;
    try {
      if (typeof target === "function") {
        target(text);
      } else {
        // Write callbacks run in order, so waiting for the last one means all were flushed.
        this.lastWrite = new Promise((resolve) => {
          target.write(text, (err?: Error | null) => {
            if (err && this.error === undefined) this.error = err;
            resolve();
          });
        });
      }
    } catch (err) {
      this.error = err;
    }
  }
}
