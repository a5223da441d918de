// What `matchlock pull` shows while it works: on a terminal one redrawn progress bar (bytes and
// layers); otherwise (logs, pipes, CI) one plain line per step.
import type { PullEvent } from "../engine/image/registry/pull.js";
import { formatBytes } from "../engine/byte-size.js";

const short = (digest: string) => digest.replace(/^sha256:/, "").slice(0, 12);

export class PullProgress {
  private total = 0;
  private readonly done = new Map<string, number>();
  private layers = 0;
  private finished = 0;
  private lastDraw = 0;
  private readonly sizes = new Map<string, number>();

  constructor(private readonly out: NodeJS.WriteStream, private readonly tty: boolean) {}

  handle = (e: PullEvent): void => {
    switch (e.type) {
      case "resolved":
        this.remember(e);
        this.layers = e.layers.length;
        this.total = e.layers.reduce((n, l) => n + l.size, 0);
        if (!this.tty) this.out.write(`Resolved: ${e.manifestDigest} (${e.layers.length} layers, ${formatBytes(this.total)})\n`);
        break;
      case "progress":
        this.done.set(e.digest, e.bytes);
        if (this.tty && Date.now() - this.lastDraw > 100) this.draw();
        break;
      case "layer-done": {
        this.finished++;
        const layer = this.layerSize(e.digest);
        this.done.set(e.digest, layer);
        if (this.tty) this.draw();
        else this.out.write(`${short(e.digest)}: ${e.cached ? "Already exists" : `Downloaded ${formatBytes(layer)}`} (${this.finished}/${this.layers})\n`);
        break;
      }
      case "up-to-date":
        this.out.write(`Image is up to date (${short(e.digest)})\n`);
        break;
      case "unpacking":
        if (this.tty) {
          this.draw();
          this.out.write("\n");
        }
        this.out.write("Unpacking...\n");
        break;
    }
  };

  /** Sizes come with "resolved"; remember them per digest for the lines. */
  private layerSize(digest: string): number {
    return this.sizes.get(digest) ?? this.done.get(digest) ?? 0;
  }

  private remember(e: PullEvent): void {
    if (e.type === "resolved") for (const l of e.layers) this.sizes.set(l.digest, l.size);
  }

  private draw(): void {
    this.lastDraw = Date.now();
    const bytes = [...this.done.values()].reduce((a, b) => a + b, 0);
    const frac = this.total > 0 ? Math.min(1, bytes / this.total) : 1;
    const width = 30;
    const fill = Math.round(frac * width);
    const bar = `${"=".repeat(Math.max(0, fill - 1))}${fill > 0 ? ">" : ""}${" ".repeat(width - fill)}`;
    this.out.write(`\r[${bar}] ${formatBytes(bytes)} / ${formatBytes(this.total)}  ${this.finished}/${this.layers} layers\x1b[K`);
  }
}
