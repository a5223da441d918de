// The params of `exec` and `exec_stream` (spec §2): the schema that validates them and says
// what is wrong, and a check for the usual well-formed shape that skips the schema. exec is the
// call whose round trip counts most, and the schema's parse cost a large share of the engine's
// own time on it; anything the quick check does not accept goes through the schema as before.
import { z } from "zod";

export const execParams = z.object({ command: z.string().default(""), working_dir: z.string().optional() });
export type ExecParams = z.infer<typeof execParams>;

/** The params when they are a plain object the schema would accept as is; else undefined. */
export function wellFormedExecParams(params: unknown): ExecParams | undefined {
  if (typeof params !== "object" || params === null || Array.isArray(params)) return undefined;
  const { command, working_dir } = params as { command?: unknown; working_dir?: unknown };
  if (command !== undefined && typeof command !== "string") return undefined;
  if (working_dir !== undefined && typeof working_dir !== "string") return undefined;
  return working_dir === undefined ? { command: command ?? "" } : { command: command ?? "", working_dir };
}
