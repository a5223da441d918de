// Splits the engine's stdout into lines. Works on Buffers with no length limit: a single
// response line can be tens of MB (a large read_file or exec result in base64), and splitting
// bytes rather than strings keeps multi-byte characters intact across chunk boundaries.

export class LineSplitter {
  private parts: Buffer[] = [];

  constructor(private readonly onLine: (line: Buffer) => void) {}

  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl === -1) break;
      const piece = chunk.subarray(start, nl);
      if (this.parts.length === 0) {
        this.onLine(piece);
      } else {
        this.parts.push(piece);
        const line = Buffer.concat(this.parts);
        this.parts = [];
        this.onLine(line);
      }
      start = nl + 1;
    }
    if (start < chunk.length) this.parts.push(chunk.subarray(start));
  }

  /** Emits a last line that had no trailing newline. */
  end(): void {
    if (this.parts.length === 0) return;
    const line = Buffer.concat(this.parts);
    this.parts = [];
    this.onLine(line);
  }
}
