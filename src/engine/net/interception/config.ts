// The `network.interception` create field (protocol spec 5.7): rules that block or change HTTP
// requests and answers passing through the proxy, and the socket where SDK-side callbacks
// answer. Checked strictly at create: a rule that could not do what it says (a mutation for the
// other phase, a framing header, a path that is not a path) is refused by name, never dropped.
import { isIP } from "node:net";
import { z } from "zod";
import { HOP_BY_HOP } from "../guest-answer.js";
import { compilePathGlob } from "./path-glob.js";

/** Longest a callback may take (timeout_ms), and how long one without timeout_ms may. */
export const MAX_HOOK_TIMEOUT_MS = 60_000;
export const DEFAULT_HOOK_TIMEOUT_MS = 5_000;

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/**
 * Headers the proxy states itself: the body's framing and the connection's own. A rule that set
 * one could make the upstream read a body as a second request nobody checked.
 */
export const PROXY_OWNED_HEADERS = new Set([...HOP_BY_HOP, "content-length"]);

const headerNameSchema = z.string().refine((k) => TOKEN.test(k), { error: (i) => `${JSON.stringify(i.input)} is not a valid header name` });
export const isHeaderName = (k: string) => TOKEN.test(k);
export const headerValueSchema = z.string().refine((v) => !/[\r\n\0]/.test(v), { error: "a header value may not contain CR, LF or NUL" });

/** Why `p` cannot replace a URL path, or undefined: origin-form, no query or fragment, nothing a request line cannot carry. */
export function badPath(p: string): string | undefined {
  if (!p.startsWith("/")) return `${JSON.stringify(p)} does not start with /`;
  if (/[?#]/.test(p)) return `${JSON.stringify(p)} contains ? or # (a path has neither; use set_query for the query)`;
  if (/[\0-\x20\x7f]/.test(p)) return `${JSON.stringify(p)} contains whitespace or control characters`;
  return undefined;
}

/** Why `h` cannot name the host a request goes to, or undefined. */
export function badHost(h: string): string | undefined {
  if (isIP(h)) return undefined;
  return /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/.test(h) ? undefined : `${JSON.stringify(h)} is not a host name (and no port may be given)`;
}

const bodyReplacementSchema = z.strictObject({
  find: z.string().min(1, "find must not be empty"),
  replace: z.string().optional(),
});

const ruleSchema = z.strictObject({
  name: z.string().optional(),
  phase: z.enum(["", "before", "after"], { error: 'phase must be "before" or "after"' }).optional(),
  hosts: z.array(z.string()).nullish(),
  methods: z.array(z.string().refine((m) => TOKEN.test(m), { error: (i) => `${JSON.stringify(i.input)} is not an HTTP method` })).nullish(),
  path: z.string().refine((p) => !(compilePathGlob(p) instanceof Error), { error: (i) => (compilePathGlob(i.input as string) as Error).message }).optional(),
  action: z.enum(["", "allow", "block", "mutate"], { error: 'action must be "allow", "block" or "mutate"' }).optional(),
  callback_id: z.string().optional(),
  timeout_ms: z.number().int("timeout_ms must be an integer").min(0, "timeout_ms must not be negative").max(MAX_HOOK_TIMEOUT_MS, `timeout_ms must be at most ${MAX_HOOK_TIMEOUT_MS}`).optional(),
  set_headers: z.record(z.string(), headerValueSchema).nullish(),
  delete_headers: z.array(headerNameSchema).nullish(),
  set_query: z.record(z.string(), z.string()).nullish(),
  delete_query: z.array(z.string()).nullish(),
  rewrite_path: z.string().refine((p) => !p || badPath(p) === undefined, { error: (i) => `rewrite_path ${badPath(i.input as string)}` }).optional(),
  set_response_headers: z.record(z.string(), headerValueSchema).nullish(),
  delete_response_headers: z.array(headerNameSchema).nullish(),
  body_replacements: z.array(bodyReplacementSchema).nullish(),
});

export type InterceptionRule = z.infer<typeof ruleSchema>;

const BEFORE_FIELDS = ["set_headers", "delete_headers", "set_query", "delete_query", "rewrite_path"] as const;
const AFTER_FIELDS = ["set_response_headers", "delete_response_headers", "body_replacements"] as const;

const has = (v: unknown) => v !== undefined && v !== null && v !== "" && !(Array.isArray(v) && v.length === 0) && !(typeof v === "object" && !Array.isArray(v) && Object.keys(v as object).length === 0);

/** Does the rule change anything for its phase (mutation fields present)? */
export function mutates(r: InterceptionRule): boolean {
  return (r.phase === "after" ? AFTER_FIELDS : BEFORE_FIELDS).some((f) => has(r[f]));
}

export const interceptionSchema = z.strictObject({
  rules: z.array(ruleSchema).nullish(),
  callback_socket: z.string().refine((p) => p.startsWith("/"), { error: "callback_socket must be an absolute path" }).optional(),
}).superRefine((c, ctx) => {
  const rules = c.rules ?? [];
  for (const [i, r] of rules.entries()) {
    const issue = (field: string, message: string) => ctx.addIssue({ code: "custom", path: ["rules", i, field], message });
    const phase = r.phase === "after" ? "after" : "before";
    for (const f of phase === "after" ? BEFORE_FIELDS : AFTER_FIELDS) {
      if (has(r[f])) issue(f, `applies only to phase ${phase === "after" ? "before" : "after"} rules (this rule's phase is ${phase})`);
    }
    for (const [field, names] of [["set_headers", Object.keys(r.set_headers ?? {})], ["delete_headers", r.delete_headers ?? []], ["set_response_headers", Object.keys(r.set_response_headers ?? {})], ["delete_response_headers", r.delete_response_headers ?? []]] as const) {
      const badName = names.find((n) => !TOKEN.test(n));
      if (badName !== undefined) issue(field, `${JSON.stringify(badName)} is not a valid header name`);
      const owned = names.find((n) => PROXY_OWNED_HEADERS.has(n.toLowerCase()));
      if (owned) issue(field, `${owned} is stated by the proxy (message framing, connection), not by rules`);
    }
    if ((r.delete_headers ?? []).some((n) => n.toLowerCase() === "host")) issue("delete_headers", "Host cannot be deleted: every request names its host (set it to send the request to another allowed host)");
    const host = Object.entries(r.set_headers ?? {}).find(([k]) => k.toLowerCase() === "host")?.[1];
    if (host !== undefined && badHost(host)) issue("set_headers", `Host ${badHost(host)}`);
    if (r.callback_id) {
      if (r.action && r.action !== "allow") issue("action", `a rule with a callback_id must have action allow or none, not ${r.action}`);
      if (!c.callback_socket) issue("callback_id", "needs network.interception.callback_socket (where the callback answers)");
    }
  }
  if (c.callback_socket && !rules.some((r) => r.callback_id)) {
    ctx.addIssue({ code: "custom", path: ["callback_socket"], message: "is set, but no rule has a callback_id" });
  }
});

export type InterceptionConfig = z.infer<typeof interceptionSchema>;

/** Every string a rule sends on or hands back: none may hold a secret's real value. */
export function ruleTexts(r: InterceptionRule): string[] {
  return [
    ...Object.entries(r.set_headers ?? {}).flat(), ...Object.entries(r.set_query ?? {}).flat(), r.rewrite_path ?? "",
    ...Object.entries(r.set_response_headers ?? {}).flat(), ...(r.body_replacements ?? []).flatMap((b) => [b.find, b.replace ?? ""]),
  ];
}
