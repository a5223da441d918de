// Writes protocol messages to stdout, one compact JSON line each, in call order. Nothing else
// may ever be written to this stream.
import type { Writable } from "node:stream";
import { encodeJsonLine } from "../../protocol/base64.js";
import type { RequestId } from "../../protocol/rpc.js";
import type { ErrorKind } from "../../protocol/errors.js";

export class MessageWriter {
  private broken = false;
  private readonly brokenListeners: Array<() => void> = [];

  constructor(private readonly out: Writable) {
    out.on("error", () => this.markBroken());
  }

  onBroken(listener: () => void): void {
    this.brokenListeners.push(listener);
  }

  result(id: RequestId | null | undefined, result: Record<string, unknown>): void {
    // A response carries the request's id, or no id key at all when the request had none.
    // Built whole, not spread into: every exec's reply passes here.
    this.write(id === undefined || id === null ? { jsonrpc: "2.0", result } : { jsonrpc: "2.0", result, id });
  }

  /** An error response; `kind` goes in `error.data` (see protocol/errors.ts). */
  error(id: RequestId | null | undefined, code: number, message: string, kind?: ErrorKind): void {
    const error = kind ? { code, message, data: { kind } } : { code, message };
    this.write(id === undefined || id === null ? { jsonrpc: "2.0", error } : { jsonrpc: "2.0", error, id });
  }

  /**
   * Writes a notification. Returns a promise when the client is not keeping up: the caller
   * should wait for it before producing more (see ExecSink).
   */
  notify(method: string, params: Record<string, unknown>): Promise<void> | undefined {
    if (this.write({ jsonrpc: "2.0", method, params })) return undefined;
    return new Promise((resolve) => {
      const done = () => {
        this.out.off("drain", done);
        this.out.off("close", done);
        resolve();
      };
      this.out.on("drain", done);
      this.out.on("close", done);
    });
  }

  /** Resolves once everything written so far has been handed to the OS. */
  flush(): Promise<void> {
    if (this.broken || this.out.writableLength === 0) return Promise.resolve();
    return new Promise((resolve) => this.out.write("", () => resolve()));
  }

  /** False when the stream's buffer is full (the client reads slower than we write). */
  private write(message: object): boolean {
    if (this.broken) return true;
    return this.out.write(encodeJsonLine(message)); // results may hold Base64Data (file chunks)
  }

  private markBroken(): void {
    if (this.broken) return;
    this.broken = true;
    for (const l of this.brokenListeners) l();
  }
}
