// `-i` and `-t` of `matchlock run`: the command's stdin from ours, on a terminal of its own.
import { ExecInput } from "../engine/agent/exec-input.js";
import { enterRawMode, followResizes, sizeOf } from "../sdk/terminal.js";

export interface InteractiveFlags {
  interactive?: boolean;
  tty?: boolean;
}

export interface AttachedInput {
  /** Undefined without -i and -t: the command's stdin is /dev/null. */
  input: ExecInput | undefined;
  /** Stops reading our stdin and puts our terminal back. */
  detach(): void;
}

/**
 * -i: our stdin is copied into the command's, at its pace (we stop reading while it is behind),
 * and its end is the command's EOF. -t: the command runs on a terminal the size of ours (24 x 80
 * when our stdout is not one) that follows our resizes; with -i, a terminal stdin goes raw, so
 * ctrl-C and the rest reach the command instead of stopping `matchlock`.
 */
export function attachInput(flags: InteractiveFlags, stdin: NodeJS.ReadStream = process.stdin, stdout: NodeJS.WriteStream = process.stdout): AttachedInput {
  if (!flags.interactive && !flags.tty) return { input: undefined, detach: () => undefined };
  const [rows, cols] = sizeOf(stdout) ?? [24, 80];
  const input = new ExecInput(flags.tty ? { rows, cols } : undefined);
  const undo: Array<() => void> = [];
  if (flags.tty) undo.push(followResizes(stdout, (r, c) => input.resize({ rows: r, cols: c })));
  if (flags.interactive) {
    undo.push(enterRawMode(stdin));
    const onData = (chunk: Buffer) => {
      const behind = input.write(chunk);
      if (!behind) return;
      stdin.pause();
      void behind.then(() => stdin.resume());
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
  return { input, detach: () => undo.reverse().forEach((f) => f()) };
}
