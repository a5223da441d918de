// Exit statuses of `matchlock run` and `matchlock exec`, as Docker's: the command's own status
// when it ran, and three of their own that say it did not.
/** The engine, the sandbox or the command line failed (matchlock's own failure). */
export const EXIT_ENGINE_FAILED = 125;
/** The command exists but cannot be invoked (not executable, bad working directory). */
export const EXIT_CANNOT_INVOKE = 126;
/** The command was not found. */
export const EXIT_NOT_FOUND = 127;

/** A failure that ends the CLI with this status (its message on stderr, as every CLI error). */
export class CliExit extends Error {
  constructor(readonly status: number, message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** Runs a command's action so that any failure of its own ends it with `status` (125: not the command's). */
export async function failingWith(status: number, action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (err) {
    if (err instanceof CliExit) throw err;
    throw new CliExit(status, (err as Error)?.message ?? String(err), { cause: err });
  }
}
