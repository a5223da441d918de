// Option parsers shared by the commands.

/** For repeatable options: every value, in order. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
