// `-i` and `-t` of `matchlock run` and `matchlock exec`: the command's stdin from ours, on a
// terminal of its own. `run` feeds the engine it runs in-process, `exec` an engine over the wire:
// both through the same copy, raw mode and resize handling here.
import { ExecInput, type TerminalSize } from "../engine/agent/exec-input.js";
import { enterRawMode, followResizes, sizeOf } from "../sdk/terminal.js";

export interface InteractiveFlags {
  interactive?: boolean;
  tty?: boolean;
}

/** Where the command's input goes: a promise from write() means "wait before sending more". */
export interface CommandInput {
  write(data: Buffer): Promise<unknown> | unknown;
  end(): void;
  resize(size: TerminalSize): void;
}

/** The terminal size the command starts with: ours, or 24 x 80 when our stdout is not a terminal. */
export function startingSize(stdout: NodeJS.WriteStream = process.stdout): TerminalSize {
  const [rows, cols] = sizeOf(stdout) ?? [24, 80];
  return { rows, cols };
}

/**
 * -i: our stdin is copied into the command's, at its pace (we stop reading while it is behind),
 * and its end is the command's EOF. -t: the command's terminal follows our resizes; with -i, a
 * terminal stdin goes raw, so ctrl-C and the rest reach the command instead of stopping
 * `matchlock`. Returns what stops reading our stdin and puts our terminal back.
 */
export function connectInput(flags: InteractiveFlags, input: CommandInput, stdin: NodeJS.ReadStream = process.stdin, stdout: NodeJS.WriteStream = process.stdout): () => void {
  const undo: Array<() => void> = [];
  if (flags.tty) undo.push(followResizes(stdout, (rows, cols) => input.resize({ rows, cols })));
  if (flags.interactive) {
    undo.push(enterRawMode(stdin));
    const onData = (chunk: Buffer) => {
      const behind = input.write(chunk);
      if (!(behind instanceof Promise)) return;
      stdin.pause();
      // A failed write ends the command's input; its outcome is the command's to report.
      void behind.then(() => stdin.resume(), () => undefined);
    };
    const onEnd = () => input.end();
    stdin.on("data", onData);
    stdin.once("end", onEnd);
    undo.push(() => {
      stdin.off("data", onData);
      stdin.off("end", onEnd);
      stdin.pause();
    });
  }
  return () => undo.reverse().forEach((f) => f());
}

export interface AttachedInput {
  /** Undefined without -i and -t: the command's stdin is /dev/null. */
  input: ExecInput | undefined;
  /** Stops reading our stdin and puts our terminal back. */
  detach(): void;
}

/** `run`'s: the in-process engine's input of the command, connected to our stdin and terminal. */
export function attachInput(flags: InteractiveFlags, stdin: NodeJS.ReadStream = process.stdin, stdout: NodeJS.WriteStream = process.stdout): AttachedInput {
  if (!flags.interactive && !flags.tty) return { input: undefined, detach: () => undefined };
  const input = new ExecInput(flags.tty ? startingSize(stdout) : undefined);
  return { input, detach: connectInput(flags, input, stdin, stdout) };
}
