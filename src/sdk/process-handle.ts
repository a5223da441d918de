// A command started with client.spawn(): its streams, its exit, and signals to it, while it runs.
import { Writable, type Readable } from "node:stream";
import type { ExecInputChannel } from "./exec-input.js";
import { MatchlockError } from "./errors.js";
import type { ExecStreamResult } from "./types.js";

/** Bytes the stdin Writable buffers before write() returns false. */
const STDIN_HIGH_WATER = 256 * 1024;

export class ProcessHandle {
  /**
   * The command's stdin. Each chunk is passed on once the command can take more, so write()
   * returns false (and 'drain' follows) at the command's pace. end() gives it EOF. Writing after
   * the command ended fails with an EPIPE error, as for a local child process.
   */
  readonly stdin: Writable;

  constructor(
    /** The command's shell's pid, inside the sandbox (also its process group). */
    readonly pid: number,
    private readonly input: ExecInputChannel,
    /** The command's stdout, byte-exact; on a terminal, all its output. Read it (or resume it): a full one holds every command of this client up. */
    readonly stdout: Readable,
    /** The command's stderr, byte-exact (empty on a terminal). */
    readonly stderr: Readable,
    private readonly done: Promise<ExecStreamResult>,
  ) {
    this.stdin = new Writable({
      highWaterMark: STDIN_HIGH_WATER,
      write: (chunk: Buffer, _encoding, callback) => {
        input.write(chunk).then((more) => callback(more ? null : epipe()), (err: Error) => callback(err));
      },
      final: (callback) => {
        input.end();
        callback();
      },
    });
  }

  /**
   * Resolves with the exit status when the command ends (a non-zero exit is a result, not an
   * error); rejects when it could not run to its end (sandbox lost, client closed), and then the
   * output streams simply end.
   */
  wait(): Promise<ExecStreamResult> {
    return this.done;
  }

  /** Sends a signal (default SIGTERM) to the command's process group; false when it had already ended. */
  kill(signal: NodeJS.Signals | number = "SIGTERM"): Promise<boolean> {
    return this.input.signal(signal);
  }

  /** Resizes the command's terminal (spawned with `tty`); ignored otherwise. */
  resize(rows: number, cols: number): void {
    this.input.resize(rows, cols);
  }
}

function epipe(): Error {
  return Object.assign(new MatchlockError("write EPIPE: the command no longer reads its stdin (it ended)"), { code: "EPIPE" });
}
