// The stdin of one exec_pipe / exec_tty command, between the client and the agent.
//
// Input (data, EOF, resizes) is kept in arrival order. Memory is bounded twice: the agent holds
// at most STDIN_WINDOW unacknowledged bytes (we send only against its STDIN_ACK credit), and
// this queue holds about MAX_QUEUED_STDIN more; past that, write() returns a promise that
// settles once the command has taken enough, and whoever feeds us waits for it (the RPC reader
// stops reading the client, or an exec_write reply is held back).
import { FrameType, STDIN_CHUNK, STDIN_WINDOW, decodeUint32, AgentProtocolError, type FrameTypeCode } from "../../protocol/agent-frames.js";

/** Bytes queued in the engine, beyond the agent's window, before the writer has to wait. */
export const MAX_QUEUED_STDIN = 1024 * 1024;
/** exec_write is refused past this: its client did not wait for the replies (see session.ts). */
export const MAX_UNANSWERED_STDIN = 8 * MAX_QUEUED_STDIN;

export interface TerminalSize {
  rows: number;
  cols: number;
}

/** Sends one frame of this exec; a promise when the channel is full; throws when it is lost. */
export type InputSender = (type: FrameTypeCode, payload: Buffer) => Promise<void> | undefined;

type Item = Buffer | TerminalSize | typeof EOF;
const EOF = Symbol("eof");

export class ExecInput {
  private readonly items: Item[] = [];
  private queued = 0;
  private credit = STDIN_WINDOW;
  private send: InputSender | undefined;
  private flushing = false;
  private ended = false;
  private closed = false;
  private waiters: Array<() => void> = [];
  /** Told the command's pid once it runs. */
  onStarted: ((pid: number) => void) | undefined;

  /** `tty` set: the command runs on a terminal of this size. */
  constructor(readonly tty?: TerminalSize) {}

  /** Queues stdin bytes; a promise while the queue is over its bound (settles when it is not, or the exec ends). */
  write(data: Buffer): Promise<void> | undefined {
    if (this.closed || this.ended || data.length === 0) return undefined;
    this.items.push(data);
    this.queued += data.length;
    this.flush();
    return this.backlog();
  }

  /** Bytes waiting in the engine (not yet sent to the agent). */
  get queuedBytes(): number {
    return this.queued;
  }

  /** A promise while more than MAX_QUEUED_STDIN bytes wait in the engine. */
  backlog(): Promise<void> | undefined {
    if (this.closed || this.queued <= MAX_QUEUED_STDIN) return undefined;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** End of input, after what was queued. */
  end(): void {
    if (this.closed || this.ended) return;
    this.ended = true;
    this.items.push(EOF);
    this.flush();
  }

  /** Cancel: what is queued is dropped and the command reads EOF now. */
  abort(): void {
    if (this.closed) return;
    for (let i = this.items.length - 1; i >= 0; i--) if (Buffer.isBuffer(this.items[i])) this.items.splice(i, 1);
    this.queued = 0;
    this.release();
    this.end();
  }

  resize(size: TerminalSize): void {
    if (this.closed || !this.tty) return;
    this.items.push(size);
    this.flush();
  }

  /** Sends a signal to the command's process group (once it runs; before that it is dropped, as for an exec that ended). */
  signal(signo: number): void {
    if (this.closed || !this.send) return;
    try {
      void this.send(FrameType.SIGNAL, Buffer.from([signo]));
    } catch {
      // the channel is lost: the exec fails with the reason
    }
  }

  /** The opening frame went out: frames for the exec can follow. */
  attach(send: InputSender): void {
    this.send = send;
    this.flush();
  }

  /** A STDIN_ACK or STARTED frame of this exec. */
  onFrame(type: number, payload: Buffer): void {
    if (type === FrameType.STARTED) {
      this.onStarted?.(decodeUint32(payload, "STARTED"));
      return;
    }
    const n = decodeUint32(payload, "STDIN_ACK");
    if (n > STDIN_WINDOW - this.credit) throw new AgentProtocolError(`STDIN_ACK of ${n} bytes, more than were sent`);
    this.credit += n;
    this.flush();
  }

  /** The exec is over: nothing more is sent, and every waiting writer goes on. */
  close(): void {
    this.closed = true;
    this.items.length = 0;
    this.queued = 0;
    this.release();
  }

  /** Sends what the credit allows, in order; one loop at a time, waiting when the channel is full. */
  private flush(): void {
    if (this.flushing || !this.send || this.closed) return;
    this.flushing = true;
    void this.flushLoop();
  }

  private async flushLoop(): Promise<void> {
    try {
      while (!this.closed && this.items.length > 0) {
        const item = this.items[0]!;
        let frame: [FrameTypeCode, Buffer];
        if (item === EOF) {
          this.items.shift();
          frame = [FrameType.STDIN_EOF, Buffer.alloc(0)];
        } else if (Buffer.isBuffer(item)) {
          if (this.credit === 0) return; // STDIN_ACK resumes us
          const n = Math.min(item.length, this.credit, STDIN_CHUNK);
          if (n === item.length) this.items.shift();
          else this.items[0] = item.subarray(n);
          this.credit -= n;
          this.queued -= n;
          frame = [FrameType.STDIN, item.subarray(0, n)];
        } else {
          this.items.shift();
          const p = Buffer.alloc(4);
          p.writeUInt16BE(item.rows, 0);
          p.writeUInt16BE(item.cols, 2);
          frame = [FrameType.RESIZE, p];
        }
        if (this.queued <= MAX_QUEUED_STDIN) this.release();
        const full = this.send!(frame[0], frame[1]);
        if (full) await full;
      }
    } catch {
      this.close(); // the channel is lost: the exec fails with the reason
    } finally {
      this.flushing = false; // synchronously at a return: an ACK arriving next finds the loop free
    }
  }

  private release(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
