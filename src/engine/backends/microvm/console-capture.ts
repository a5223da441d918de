// The guest's serial console (and QEMU's own messages) into the sandbox log. What the guest
// prints is hostile and unbounded (any root process in it can write to the console), so only
// the first CAP bytes reach the log file; the last few KiB are kept for startup error messages.
import type { FileHandle } from "node:fs/promises";

const CAP = 1024 * 1024;
const TAIL = 4096;

export class ConsoleCapture {
  private logged = 0;
  private last = Buffer.alloc(0);
  private writes: Promise<unknown> = Promise.resolve();

  constructor(private readonly log: FileHandle) {}

  write(data: Buffer): void {
    this.last = Buffer.concat([this.last, data]).subarray(-TAIL);
    if (this.logged >= CAP) return;
    const part = data.subarray(0, CAP - this.logged);
    this.logged += part.length;
    this.writes = this.writes.then(() => this.log.write(part)).catch(() => undefined);
    if (this.logged >= CAP) this.writes = this.writes.then(() => this.log.write("\n[console output truncated]\n")).catch(() => undefined);
  }

  /** The last lines seen, control characters removed, for error messages. */
  tail(lines = 15): string {
    return this.last.toString("utf8").replace(/[^\n\t\x20-\x7e]/g, "").split("\n").filter((l) => l.trim()).slice(-lines).join("\n");
  }

  async close(): Promise<void> {
    await this.writes;
    await this.log.close().catch(() => undefined);
  }
}
