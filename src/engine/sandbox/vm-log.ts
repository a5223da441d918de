// A sandbox's log (<state dir>/logs/vm.log): what its engine wrote (gVisor's runsc, the micro-VM's
// console), the output of its image's entrypoint and of `matchlock run`'s command. Read whole
// (`log`), followed as it grows (`log_stream`, `matchlock log -f`), and appended to with a cap.
import { open, type FileHandle } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

/** How often a follower looks for new bytes (the protocol's 100 ms). */
const POLL_MS = 100;
/** The most a follower hands over at once: a log of many MiB goes out in pieces. */
export const FOLLOW_CHUNK_BYTES = 256 * 1024;
/** The most of a command's or entrypoint's output one sandbox's log takes: a guest must not fill the host's disk. */
export const MAX_LOGGED_OUTPUT = 64 * 1024 * 1024;

/** The whole log; empty when there is none (yet). */
export async function readVmLog(path: string): Promise<Buffer> {
  const file = await openIfExists(path);
  if (!file) return Buffer.alloc(0);
  try {
    return await file.readFile();
  } finally {
    await file.close();
  }
}

export interface FollowOptions {
  /** Gets each new piece; a returned promise holds the next read until it settles (back-pressure). */
  onData: (data: Buffer) => unknown;
  /** Whether the writer is done: once it says so, what is left is handed over and the follow ends. */
  stopped: () => boolean | Promise<boolean>;
  signal?: AbortSignal | undefined;
}

/**
 * Hands over the log's content, then every byte appended to it, until `stopped()` (checked
 * between reads) says the sandbox is done, or `signal` aborts (then it throws the abort reason).
 * A log that shrinks (it was replaced) is followed again from its start.
 */
export async function followVmLog(path: string, opts: FollowOptions): Promise<void> {
  let offset = 0;
  const buf = Buffer.alloc(FOLLOW_CHUNK_BYTES);
  for (;;) {
    opts.signal?.throwIfAborted();
    // Asked before reading: bytes written before the stop are then read in this round.
    const done = await opts.stopped();
    const file = await openIfExists(path);
    if (file) {
      try {
        if ((await file.stat()).size < offset) offset = 0;
        for (;;) {
          opts.signal?.throwIfAborted();
          const { bytesRead } = await file.read(buf, 0, buf.length, offset);
          if (bytesRead === 0) break;
          offset += bytesRead;
          await opts.onData(Buffer.from(buf.subarray(0, bytesRead)));
        }
      } finally {
        await file.close();
      }
    }
    if (done) return;
    await sleep(POLL_MS, undefined, opts.signal ? { signal: opts.signal } : {}).catch(() => opts.signal?.throwIfAborted());
  }
}

/**
 * Appends a guest's output to the log, at most MAX_LOGGED_OUTPUT bytes of it (then one line
 * says the rest was dropped). Writes are in order; `close` waits for them.
 */
export class CappedLogAppender {
  private logged = 0;
  private writes: Promise<unknown> = Promise.resolve();

  private constructor(private readonly file: FileHandle, private readonly what: string) {}

  static async open(path: string, what: string): Promise<CappedLogAppender> {
    return new CappedLogAppender(await open(path, "a", 0o600), what);
  }

  /** The guest's bytes, cut at the cap. Returns the write, for a caller that waits for it. */
  write(data: Buffer): Promise<unknown> {
    const room = MAX_LOGGED_OUTPUT - this.logged;
    if (room <= 0) return this.writes;
    this.logged += Math.min(room, data.length);
    const piece = data.length > room
      ? Buffer.concat([data.subarray(0, room), Buffer.from(`\n[${this.what} output past ${MAX_LOGGED_OUTPUT} bytes is not logged]\n`)])
      : data;
    return this.append(piece);
  }

  /** A line of our own (not counted against the guest's cap). */
  note(line: string): Promise<unknown> {
    return this.append(Buffer.from(`${line}\n`));
  }

  async close(): Promise<void> {
    await this.writes;
    await this.file.close().catch(() => undefined);
  }

  private append(data: Buffer): Promise<unknown> {
    this.writes = this.writes.then(() => this.file.write(data)).catch(() => undefined);
    return this.writes;
  }
}

async function openIfExists(path: string): Promise<FileHandle | undefined> {
  try {
    return await open(path, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}
