// The `vfs.interception` create field (protocol spec 5.8): rules that fail file operations on the
// sandbox's mounts with EPERM, and file events for every operation there. The guest's
// intercepting file system (guest/agent/fuse-server.c) applies them, so they hold for the
// sandbox's own commands as much as for the file RPCs. Checked strictly at create: an op, action
// or glob that would match nothing or mean nothing is refused by name, never dropped.
import { z } from "zod";
import { MAX_HOOK_TIMEOUT_MS } from "../../net/interception/config.js";

/** The operations, in the order of the agent's op bits (guest/agent/agent.h, enum vfs_op). */
export const VFS_OPS = [
  "stat", "readdir", "open", "create", "mkdir", "chmod", "remove", "remove_all",
  "rename", "symlink", "readlink", "read", "write", "close", "sync", "truncate",
] as const;
export type VfsOp = (typeof VFS_OPS)[number];

const ALIASES: Record<string, VfsOp> = { read_dir: "readdir", removeall: "remove_all" };

/** An op name as upstream compares them: case-insensitive, with its two aliases. */
export function canonicalOp(name: string): VfsOp | undefined {
  const lower = name.toLowerCase();
  return ALIASES[lower] ?? (VFS_OPS as readonly string[]).find((o) => o === lower) as VfsOp | undefined;
}

/** Why `glob` cannot be a rule's path, or undefined. Globs are Go's filepath.Match syntax on absolute guest paths. */
export function badGlob(glob: string): string | undefined {
  if (!glob) return undefined;
  if (!glob.startsWith("/")) return `${JSON.stringify(glob)} is not absolute: rules match absolute guest paths (e.g. /workspace/*.env)`;
  if (glob.includes("\0")) return "a path glob may not contain NUL";
  for (let i = 0; i < glob.length; i++) {
    if (glob[i] === "\\") {
      if (++i >= glob.length) return `${JSON.stringify(glob)} ends with an unfinished escape`;
    } else if (glob[i] === "[") {
      const close = glob.indexOf("]", i + 2);
      if (close < 0) return `${JSON.stringify(glob)} has an unclosed [`;
      i = close;
    }
  }
  return undefined;
}

const ruleSchema = z.strictObject({
  name: z.string().optional(),
  phase: z.enum(["", "before", "after"], { error: 'phase must be "before" or "after"' }).optional(),
  ops: z.array(z.string().refine((o) => canonicalOp(o) !== undefined, {
    error: (i) => `unknown op ${JSON.stringify(i.input)} (one of ${VFS_OPS.join(", ")}; read_dir and removeall are aliases)`,
  })).nullish(),
  path: z.string().refine((p) => badGlob(p) === undefined, { error: (i) => badGlob(i.input as string)! }).optional(),
  action: z.string().transform((a) => a.trim().toLowerCase()).refine((a) => a === "" || a === "allow" || a === "block", {
    error: 'action must be "allow" or "block"',
  }).optional(),
  // A callback's time limit. An engine rule runs no callback, so it bounds nothing here, as in
  // upstream's engine; upstream's SDK sends it with a callback-less rule given timeoutMs, so it
  // is taken (checked, never acted on) rather than failing that SDK's create.
  timeout_ms: z.number().int("timeout_ms must be an integer").min(0, "timeout_ms must not be negative").max(MAX_HOOK_TIMEOUT_MS, `timeout_ms must be at most ${MAX_HOOK_TIMEOUT_MS}`).optional(),
}).superRefine((r, ctx) => {
  if (r.action === "block" && r.phase === "after") {
    ctx.addIssue({ code: "custom", path: ["phase"], message: "a block rule must run before the operation (phase before): after it, there is nothing left to block" });
  }
});

export const vfsInterceptionSchema = z.strictObject({
  emit_events: z.boolean({ error: "emit_events must be a boolean" }).optional(),
  rules: z.array(ruleSchema).nullish(),
});
export type VfsInterceptionParams = z.infer<typeof vfsInterceptionSchema>;

/** A block rule as the agent applies it: the ops it matches and its glob ("" = every path). */
export interface BlockRule {
  ops: VfsOp[];
  glob: string;
}

/** What the engine keeps of `vfs.interception`: only block rules act (allow rules are the default). */
export interface VfsInterception {
  blockRules: BlockRule[];
}

export function toVfsInterception(p: VfsInterceptionParams): VfsInterception {
  const blockRules = (p.rules ?? []).filter((r) => r.action === "block").map((r) => {
    const ops = (r.ops ?? []).map((o) => canonicalOp(o)!);
    return { ops: ops.length ? [...new Set(ops)] : [...VFS_OPS], glob: r.path ?? "" };
  });
  return { blockRules };
}

/** The agent's op mask for a rule: bit i is VFS_OPS[i]. */
export function opMask(ops: readonly VfsOp[]): number {
  return ops.reduce((m, o) => m | (1 << VFS_OPS.indexOf(o)), 0);
}
