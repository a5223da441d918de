// VFS interception on the SDK side (protocol spec 5.8). Rules without a callback go to the
// engine, which applies them in the guest. Rules with one run here, in the SDK, as upstream's
// SDKs run them: `actionHook` and `mutateHook` before this client's own writeFile / readFile /
// listFiles, `hook` and `dangerousHook` on the `file` events the engine sends. They never reach
// the wire, so they see (and can stop) only what goes through this client.
import { MatchlockError } from "./errors.js";
import { toBuffer } from "./exec-input.js";
import { waitAtMost } from "./wait-at-most.js";
import type { Client } from "./client.js";
import type { VFSActionRequest, VFSHookEvent, VFSHookRule, VFSInterceptionConfig } from "./types.js";

const RULE_FIELDS = new Set(["name", "phase", "ops", "path", "action", "timeoutMs", "hook", "dangerousHook", "mutateHook", "actionHook"]);
const CALLBACKS = ["hook", "dangerousHook", "mutateHook", "actionHook"] as const;
type CallbackName = (typeof CALLBACKS)[number];

const invalid = (why: string) => new MatchlockError(why, { kind: "invalid_argument" });

/** Which callback a rule has (at most one), or undefined for an engine rule. */
function callbackOf(r: VFSHookRule): CallbackName | undefined {
  return CALLBACKS.find((k) => r[k] !== undefined);
}

export function checkVfsInterception(cfg: VFSInterceptionConfig): VFSInterceptionConfig {
  if (typeof cfg !== "object" || cfg === null || Array.isArray(cfg)) throw invalid("vfs interception config must be an object");
  const unknown = Object.keys(cfg).filter((k) => k !== "emitEvents" && k !== "rules");
  if (unknown.length) throw invalid(`unknown vfs interception field ${unknown.join(", ")}`);
  if (cfg.emitEvents !== undefined && typeof cfg.emitEvents !== "boolean") throw invalid("vfs interception emitEvents must be a boolean");
  if (cfg.rules !== undefined && !Array.isArray(cfg.rules)) throw invalid("vfs interception rules must be an array");
  for (const [i, r] of (cfg.rules ?? []).entries()) {
    const where = `vfs interception rule ${i + 1}${r?.name ? ` (${r.name})` : ""}`;
    if (typeof r !== "object" || r === null) throw invalid(`${where} must be an object`);
    const extra = Object.keys(r).filter((k) => !RULE_FIELDS.has(k));
    if (extra.length) throw invalid(`${where}: unknown field ${extra.join(", ")}`);
    if (r.timeoutMs !== undefined && !(Number.isInteger(r.timeoutMs) && r.timeoutMs >= 0)) throw invalid(`${where}: timeoutMs must be a non-negative integer`);
    const callbacks = CALLBACKS.filter((k) => r[k] !== undefined);
    if (callbacks.length > 1) throw invalid(`${where}: a rule has at most one of hook, dangerousHook, mutateHook and actionHook (got ${callbacks.join(", ")})`);
    const callback = callbacks[0];
    if (!callback) continue;
    if (typeof r[callback] !== "function") throw invalid(`${where}: ${callback} must be a function`);
    const phase = (r.phase ?? "").trim().toLowerCase();
    const after = callback === "hook" || callback === "dangerousHook";
    if (after ? phase !== "after" : phase !== "" && phase !== "before") {
      throw invalid(`${where}: ${callback} runs ${after ? 'after the operation: set phase "after"' : 'before the operation: phase must be "before" or empty'}`);
    }
    const action = (r.action ?? "").trim().toLowerCase();
    if (action !== "" && action !== "allow") throw invalid(`${where}: a rule with ${callback} decides in the hook: its action must be "allow" or empty`);
  }
  // The rules are copied; the hooks (functions) are shared.
  return { ...cfg, ...(cfg.rules ? { rules: cfg.rules.map((r) => ({ ...r, ...(r.ops ? { ops: [...r.ops] } : {}) })) } : {}) };
}

/** The wire `vfs.interception`: the engine's rules only; undefined when it asks for nothing, as upstream omits it. */
export function vfsInterceptionWire(cfg: VFSInterceptionConfig): Record<string, unknown> | undefined {
  const all = cfg.rules ?? [];
  const rules = all.filter((r) => callbackOf(r) === undefined).map((r) => ({
    action: (r.action ?? "").trim().toLowerCase() || "allow",
    ...(r.name ? { name: r.name } : {}),
    ...(r.phase ? { phase: r.phase } : {}),
    ...(r.ops?.length ? { ops: [...r.ops] } : {}),
    ...(r.path ? { path: r.path } : {}),
    ...(r.timeoutMs && r.timeoutMs > 0 ? { timeout_ms: r.timeoutMs } : {}),
  }));
  // Event hooks need the events.
  const emitEvents = cfg.emitEvents === true || all.some((r) => r.hook || r.dangerousHook);
  if (rules.length === 0 && !emitEvents) return undefined;
  return { emit_events: emitEvents, ...(rules.length ? { rules } : {}) };
}

/** Go's filepath.Match on '/'-separated paths: `*` and `?` never cross a '/', `[...]` classes (`^` negates), `\` escapes. */
export function globToRegExp(glob: string): RegExp {
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*") out += "[^/]*";
    else if (c === "?") out += "[^/]";
    else if (c === "\\" && i + 1 < glob.length) out += escapeRegExp(glob[++i]!);
    else if (c === "[") {
      const close = glob.indexOf("]", i + 2);
      if (close < 0) throw invalid(`path glob ${JSON.stringify(glob)} has an unclosed [`);
      let body = glob.slice(i + 1, close);
      const negated = body.startsWith("^");
      if (negated) body = body.slice(1);
      const cls = body.replace(/\\(.)/g, "$1").replace(/[\]\\^]/g, "\\$&");
      out += negated ? `(?!/)[^${cls}]` : `[${cls}]`;
      i = close;
    } else out += escapeRegExp(c);
  }
  return new RegExp(`^${out}$`, "s");
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
}

interface LocalRule {
  ops: Set<string>;
  path: RegExp | undefined;
  timeoutMs: number;
  rule: VFSHookRule;
}

function matches(r: LocalRule, op: string, path: string): boolean {
  return (r.ops.size === 0 || r.ops.has(op)) && (!r.path || r.path.test(path));
}

/** Runs a hook (a throw becomes a rejection) and waits for it at most `ms` (0: as long as it takes). */
function waitFor<T>(run: () => T | Promise<T>, ms: number, what: string): Promise<T> {
  return waitAtMost(Promise.resolve().then(run), ms, () => new MatchlockError(`${what} timed out after ${ms} ms`));
}

/** The SDK-side VFS hooks of one sandbox: active from its create until its client closes. */
export class LocalVfsHooks {
  private readonly rules: LocalRule[];
  /** A safe hook run is going on: events arriving meanwhile do not start another (no re-entry). */
  private safeRunning = false;

  private constructor(cfg: VFSInterceptionConfig, private readonly client: Client) {
    this.rules = (cfg.rules ?? []).filter((r) => callbackOf(r) !== undefined).map((rule) => ({
      ops: new Set((rule.ops ?? []).map((o) => o.toLowerCase())),
      path: rule.path ? globToRegExp(rule.path) : undefined,
      timeoutMs: rule.timeoutMs ?? 0,
      rule,
    }));
  }

  /** The hooks of `cfg`, or undefined when it has none. */
  static of(cfg: VFSInterceptionConfig | undefined, client: Client): LocalVfsHooks | undefined {
    const hooks = cfg && new LocalVfsHooks(cfg, client);
    return hooks && hooks.rules.length > 0 ? hooks : undefined;
  }

  /** Runs the action hooks for this client's own `op` on `path`; "block" (or any unknown answer) refuses the call. */
  async checkAction(op: "write" | "read" | "readdir", path: string, size = 0, mode = 0): Promise<void> {
    for (const r of this.rules) {
      const hook = r.rule.actionHook;
      if (!hook || !matches(r, op, path)) continue;
      const req: VFSActionRequest = { op, path, size, mode, ...processIds() };
      const action = ((await waitFor(() => hook(req), r.timeoutMs, "vfs action hook")) ?? "").trim().toLowerCase();
      if (action === "" || action === "allow") continue;
      if (action === "block") throw new MatchlockError(`vfs action hook blocked operation: ${op} ${path}`, { kind: "policy_refused" });
      throw new MatchlockError(`vfs action hook returned unknown action ${JSON.stringify(action)} for ${op} ${path} (allow or block)`);
    }
  }

  /** Whether a write of `path` has mutate hooks (then its content must be whole bytes). */
  mutates(path: string): boolean {
    return this.rules.some((r) => r.rule.mutateHook && matches(r, "write", path));
  }

  /** The content to write after every matching mutate hook, in order, had its say. */
  async mutate(path: string, content: Buffer, mode: number): Promise<Buffer> {
    for (const r of this.rules) {
      const hook = r.rule.mutateHook;
      if (!hook || !matches(r, "write", path)) continue;
      const next = await waitFor(() => hook({ path, size: content.length, mode, ...processIds() }), r.timeoutMs, "vfs mutate hook");
      if (next === null || next === undefined) continue;
      if (typeof next !== "string" && !(next instanceof Uint8Array) && !(next instanceof ArrayBuffer)) {
        throw new MatchlockError(`vfs mutate hook for ${path} returned ${typeof next}: return a string, bytes, or nothing`);
      }
      content = toBuffer(next);
    }
    return content;
  }

  /** A `file` event from the engine: safe hooks one after another (dropped while a run is going on), dangerous ones at once. */
  onFileEvent(event: VFSHookEvent): void {
    const op = String(event.op ?? "").toLowerCase();
    const hit = this.rules.filter((r) => (r.rule.hook || r.rule.dangerousHook) && matches(r, op, String(event.path ?? "")));
    const ev = { ...event, op };
    for (const r of hit) {
      const dangerous = r.rule.dangerousHook;
      if (dangerous) void waitFor(() => dangerous(this.client, ev), r.timeoutMs, "vfs hook").catch(() => undefined);
    }
    const safe = hit.filter((r) => r.rule.hook);
    if (safe.length === 0 || this.safeRunning) return;
    this.safeRunning = true;
    void (async () => {
      for (const r of safe) await waitFor(() => r.rule.hook!(ev), r.timeoutMs, "vfs hook").catch(() => undefined);
    })().finally(() => (this.safeRunning = false));
  }
}

function processIds(): { uid: number; gid: number } {
  return { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 };
}
