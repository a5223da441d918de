// VFS interception on the SDK side (protocol spec 5.8): the rules' checks and wire form. The
// engine applies them in the guest; SDK-side callbacks (upstream's hook, dangerousHook,
// mutateHook, actionHook) are refused by name rather than dropped.
import { MatchlockError } from "./errors.js";
import type { VFSInterceptionConfig } from "./types.js";

const RULE_FIELDS = new Set(["name", "phase", "ops", "path", "action", "timeoutMs"]);
const CALLBACKS = ["hook", "dangerousHook", "mutateHook", "actionHook"];

export function checkVfsInterception(cfg: VFSInterceptionConfig): VFSInterceptionConfig {
  const invalid = (why: string) => new MatchlockError(why);
  if (typeof cfg !== "object" || cfg === null || Array.isArray(cfg)) throw invalid("vfs interception config must be an object");
  const unknown = Object.keys(cfg).filter((k) => k !== "emitEvents" && k !== "rules");
  if (unknown.length) throw invalid(`unknown vfs interception field ${unknown.join(", ")}`);
  if (cfg.emitEvents !== undefined && typeof cfg.emitEvents !== "boolean") throw invalid("vfs interception emitEvents must be a boolean");
  if (cfg.rules !== undefined && !Array.isArray(cfg.rules)) throw invalid("vfs interception rules must be an array");
  for (const [i, r] of (cfg.rules ?? []).entries()) {
    const where = `vfs interception rule ${i + 1}${r?.name ? ` (${r.name})` : ""}`;
    if (typeof r !== "object" || r === null) throw invalid(`${where} must be an object`);
    const callback = Object.keys(r).find((k) => CALLBACKS.includes(k));
    if (callback) throw invalid(`${where}: ${callback} (an SDK-side VFS hook) is not supported by this SDK yet; use engine rules (action "block") and onEvent`);
    const extra = Object.keys(r).filter((k) => !RULE_FIELDS.has(k));
    if (extra.length) throw invalid(`${where}: unknown field ${extra.join(", ")}`);
  }
  return structuredClone(cfg);
}

/** The wire `vfs.interception`; undefined when it asks for nothing (no rules, no events), as upstream omits it. */
export function vfsInterceptionWire(cfg: VFSInterceptionConfig): Record<string, unknown> | undefined {
  const rules = (cfg.rules ?? []).map((r) => ({
    action: (r.action ?? "").trim().toLowerCase() || "allow",
    ...(r.name ? { name: r.name } : {}),
    ...(r.phase ? { phase: r.phase } : {}),
    ...(r.ops?.length ? { ops: [...r.ops] } : {}),
    ...(r.path ? { path: r.path } : {}),
    ...(r.timeoutMs && r.timeoutMs > 0 ? { timeout_ms: r.timeoutMs } : {}),
  }));
  if (rules.length === 0 && !cfg.emitEvents) return undefined;
  return { emit_events: cfg.emitEvents === true, ...(rules.length ? { rules } : {}) };
}
