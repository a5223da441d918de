// Splits a byte stream into newline-terminated lines, for both ends of the NDJSON link. Works on
// Buffers, so multi-byte characters stay intact across chunk boundaries. Without a limit a line
// may be any length (the SDK reads responses of tens of MB); with one, a longer line is skipped
// to its end and reported as oversized, never held whole (the engine: one bad request costs an
// error reply, not the session).

/** How much of the start and end of a skipped line is kept, to find its request id. */
const KEEP = 256;

export interface OversizedLine {
  size: number;
  /** Its first and last bytes (latin1), where a request id would be. */
  head: string;
  tail: string;
}

export interface LineLimit {
  maxLine: number;
  onOversized: (line: OversizedLine) => void;
}

export class LineSplitter {
  private parts: Buffer[] = [];
  private size = 0;
  private skipping: { size: number; head: string; tail: Buffer } | undefined;
  private readonly maxLine: number;

  constructor(private readonly onLine: (line: Buffer) => void, private readonly limit?: LineLimit) {
    this.maxLine = limit?.maxLine ?? Infinity;
  }

  push(chunk: Buffer): void {
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
      this.emit();
      start = nl + 1;
    }
  }

  /** A last line without a trailing newline still counts. */
  end(): void {
    if (this.skipping || this.size > 0) this.emit();
  }

  private emit(): void {
    if (this.skipping) {
      const { size, head, tail } = this.skipping;
      this.skipping = undefined;
      this.limit!.onOversized({ size, head, tail: tail.toString("latin1") });
    } else {
      const line = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts);
      this.parts = [];
      this.size = 0;
      this.onLine(line);
    }
  }
}
