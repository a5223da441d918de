// The caller's own terminal, when execInteractive is given process.stdin / process.stdout (or
// any other TTY streams): raw mode, so keys (ctrl-C too) go to the sandbox's terminal instead of
// being handled here, and the sandbox's terminal follows this one's size.
import type { ReadStream, WriteStream } from "node:tty";
import type { OutputTarget, StreamReader, TTYSize } from "./types.js";

function asTtyInput(s: StreamReader | undefined): ReadStream | undefined {
  const t = s as Partial<ReadStream> | undefined;
  return t?.isTTY === true && typeof t.setRawMode === "function" ? (t as ReadStream) : undefined;
}

export function asTtyOutput(s: OutputTarget | undefined): WriteStream | undefined {
  const t = s as Partial<WriteStream> | undefined;
  return t?.isTTY === true && typeof t.columns === "number" && typeof t.rows === "number" ? (t as WriteStream) : undefined;
}

/** Puts a TTY stdin in raw mode; returns what puts it back. A no-op for anything else. */
export function enterRawMode(stdin: StreamReader | undefined): () => void {
  const tty = asTtyInput(stdin);
  if (!tty || tty.isRaw) return () => undefined;
  tty.setRawMode(true);
  return () => tty.setRawMode(false);
}

/** The size of a TTY stdout. */
export function sizeOf(stdout: OutputTarget | undefined): TTYSize | undefined {
  const tty = asTtyOutput(stdout);
  return tty ? [tty.rows, tty.columns] : undefined;
}

/** Calls `onResize` with a TTY stdout's new size on each resize; returns what stops it. */
export function followResizes(stdout: OutputTarget | undefined, onResize: (rows: number, cols: number) => void): () => void {
  const tty = asTtyOutput(stdout);
  if (!tty) return () => undefined;
  const listener = () => onResize(tty.rows, tty.columns);
  tty.on("resize", listener);
  return () => tty.off("resize", listener);
}
