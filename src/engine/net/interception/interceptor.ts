// Runs the interception rules (spec 5.7) on one request and its answer, in order: `before`
// rules on the request as the guest sent it (placeholders still in: secrets are substituted
// only after them, so no rule or callback sees or sets a real value), `after` rules on the
// answer's head with the values already turned back into placeholders. What the rules leave is
// checked by the proxy again (framing, the allow-list for a changed Host, secrets).
import { z } from "zod";
import { matchGlob, normalizeHost } from "../policy.js";
import {
  badHost, badPath, DEFAULT_HOOK_TIMEOUT_MS, headerValueSchema, isHeaderName, mutates, PROXY_OWNED_HEADERS,
  type InterceptionConfig, type InterceptionRule,
} from "./config.js";
import { callHook } from "./hook-call.js";
import { compilePathGlob } from "./path-glob.js";

export type Header = [string, string];

/** A request as the rules see and change it. */
export interface RequestView {
  method: string;
  /** Origin-form path, without the query. */
  path: string;
  /** The raw query without "?"; undefined: none. */
  query: string | undefined;
  /** Headers to send on, Host included; without the framing and connection headers (the proxy's own). */
  headers: Header[];
}

/** An answer's head as the `after` rules see and change it. */
export interface ResponseView {
  status: number;
  /** Without the framing and connection headers. */
  headers: Header[];
  isSSE: boolean;
}

export interface BodyReplacement {
  find: string;
  replace: string;
}

/** What the `after` rules made of an answer's body: replacements applied in order, to the new body if one was set. */
export interface BodyPlan {
  replacements: BodyReplacement[];
  setBody?: Buffer;
}

export type Blocked = { blockedBy: string };

interface CompiledRule {
  name: string;
  phase: "before" | "after";
  hosts: string[];
  methods: Set<string>;
  path: ((p: string) => boolean) | undefined;
  block: boolean;
  rule: InterceptionRule;
  callbackId: string | undefined;
  timeoutMs: number;
}

export interface InterceptorDeps {
  /** The name of a secret whose real value `text` holds, if any. */
  secretIn: (text: string) => string | undefined;
  log: (line: string) => void;
}

export class Interceptor {
  private readonly rules: CompiledRule[];
  private readonly socket: string | undefined;

  constructor(config: InterceptionConfig | undefined, private readonly deps: InterceptorDeps) {
    this.socket = config?.callback_socket;
    this.rules = (config?.rules ?? [])
      // A rule that neither blocks, changes nor calls back does nothing (spec 5.7).
      .filter((r) => r.action === "block" || r.callback_id || mutates(r))
      .map((r, i) => ({
        name: r.name || `rule ${i + 1}`,
        phase: r.phase === "after" ? "after" : "before",
        hosts: (r.hosts ?? []).map(normalizeHost),
        methods: new Set((r.methods ?? []).map((m) => m.toUpperCase())),
        path: r.path ? (compilePathGlob(r.path) as (p: string) => boolean) : undefined,
        block: r.action === "block",
        rule: r,
        callbackId: r.callback_id || undefined,
        timeoutMs: r.timeout_ms || DEFAULT_HOOK_TIMEOUT_MS,
      }));
  }

  get empty(): boolean {
    return this.rules.length === 0;
  }

  /** Could an `after` rule change this request's answer body? Then the proxy asks for it uncompressed. */
  mayRewriteBody(req: RequestView, host: string): boolean {
    return this.matching("after", req, host).some((r) => r.callbackId || (r.rule.body_replacements?.length ?? 0) > 0);
  }

  /** The `before` rules, in order, changing `req` in place; or which rule blocked it. */
  async before(req: RequestView, host: string): Promise<Blocked | undefined> {
    for (const r of this.rules) {
      if (r.phase !== "before" || !this.matches(r, req, hostOf(req, host))) continue;
      if (r.block) return { blockedBy: r.name };
      applyRequestRule(req, r.rule);
      if (r.callbackId) {
        const outcome = await this.callBefore(r, req, hostOf(req, host));
        if (outcome) return outcome;
      }
    }
    return undefined;
  }

  /** The `after` rules, in order, changing `res.headers` in place; the body plan, or which rule blocked the answer. */
  async after(req: RequestView, host: string, res: ResponseView): Promise<Blocked | BodyPlan> {
    const plan: BodyPlan = { replacements: [] };
    for (const r of this.matching("after", req, host)) {
      if (r.block) return { blockedBy: r.name };
      setHeaders(res.headers, r.rule.set_response_headers ?? {});
      deleteHeaders(res.headers, r.rule.delete_response_headers ?? []);
      for (const b of r.rule.body_replacements ?? []) plan.replacements.push({ find: b.find, replace: b.replace ?? "" });
      if (r.callbackId) {
        const outcome = await this.callAfter(r, req, host, res, plan);
        if (outcome) return outcome;
      }
    }
    return plan;
  }

  private matching(phase: "before" | "after", req: RequestView, host: string): CompiledRule[] {
    return this.rules.filter((r) => r.phase === phase && this.matches(r, req, host));
  }

  private matches(r: CompiledRule, req: RequestView, host: string): boolean {
    return (r.hosts.length === 0 || r.hosts.some((p) => matchGlob(p, host)))
      && (r.methods.size === 0 || r.methods.has(req.method.toUpperCase()))
      && (!r.path || r.path(req.path));
  }

  private async callBefore(r: CompiledRule, req: RequestView, host: string): Promise<Blocked | undefined> {
    const reply = await this.call(r, hookRequest(r, "before", req, host));
    if (!reply) return undefined;
    if (reply.action === "block") return { blockedBy: r.name };
    const m = reply.request;
    if (m?.headers) req.headers = m.headers;
    if (m?.query !== undefined) req.query = m.query;
    if (m?.path !== undefined) req.path = m.path;
    return undefined;
  }

  private async callAfter(r: CompiledRule, req: RequestView, host: string, res: ResponseView, plan: BodyPlan): Promise<Blocked | undefined> {
    const reply = await this.call(r, { ...hookRequest(r, "after", req, host), status_code: res.status, response_headers: headerMap(res.headers), is_sse: res.isSSE });
    if (!reply) return undefined;
    if (reply.action === "block") return { blockedBy: r.name };
    const m = reply.response;
    if (m?.headers) res.headers.splice(0, res.headers.length, ...m.headers);
    if (m?.setBody) {
      // Replacements so far applied to the body being replaced: the new one gets only later ones.
      plan.setBody = m.setBody;
      plan.replacements = [];
    }
    plan.replacements.push(...(m?.replacements ?? []));
    return undefined;
  }

  /** The callback's checked reply; undefined (fail-open, logged) when it failed, timed out or answered what cannot apply. */
  private async call(r: CompiledRule, request: Record<string, unknown>): Promise<HookReply | undefined> {
    let raw: unknown;
    try {
      raw = await callHook(this.socket!, request, r.timeoutMs);
    } catch (err) {
      this.deps.log(`interception: callback of ${r.name} skipped: ${(err as Error).message}`);
      return undefined;
    }
    const reply = parseReply(raw, r.phase, this.deps.secretIn);
    if ("problem" in reply) {
      this.deps.log(`interception: callback of ${r.name} skipped: ${reply.problem}`);
      return undefined;
    }
    return reply;
  }
}

/** The host a request goes to: its Host header, else the one it came for. */
export function hostOf(req: RequestView, fallback: string): string {
  const h = req.headers.find(([k]) => k.toLowerCase() === "host");
  return (h && normalizeHost(h[1])) || fallback;
}

function applyRequestRule(req: RequestView, r: InterceptionRule): void {
  setHeaders(req.headers, r.set_headers ?? {});
  deleteHeaders(req.headers, r.delete_headers ?? []);
  if (r.set_query || r.delete_query) {
    const q = new URLSearchParams(req.query ?? "");
    for (const [k, v] of Object.entries(r.set_query ?? {})) q.set(k, v);
    for (const k of r.delete_query ?? []) q.delete(k);
    const encoded = q.toString();
    req.query = encoded || (req.query === undefined ? undefined : "");
  }
  if (r.rewrite_path) req.path = r.rewrite_path;
}

function setHeaders(headers: Header[], set: Record<string, string>): void {
  for (const [k, v] of Object.entries(set)) {
    deleteHeaders(headers, [k]);
    headers.push([canonicalHeaderKey(k), v]);
  }
}

function deleteHeaders(headers: Header[], names: string[]): void {
  const drop = new Set(names.map((n) => n.toLowerCase()));
  for (let i = headers.length - 1; i >= 0; i--) if (drop.has(headers[i]![0].toLowerCase())) headers.splice(i, 1);
}

/** "x-api-key" → "X-Api-Key", as upstream's engine spells header names (Go's canonical form). */
export function canonicalHeaderKey(k: string): string {
  return k.toLowerCase().replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase());
}

function headerMap(headers: Header[]): Record<string, string[]> {
  const map: Record<string, string[]> = {};
  for (const [k, v] of headers) (map[canonicalHeaderKey(k)] ??= []).push(v);
  return map;
}

function hookRequest(r: CompiledRule, phase: string, req: RequestView, host: string): Record<string, unknown> {
  const query: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(req.query ?? "")) if (!(k in query)) query[k] = v;
  return {
    callback_id: r.callbackId, phase, host, method: req.method, path: req.path, query,
    request_headers: headerMap(req.headers), status_code: 0, response_headers: {}, is_sse: false,
  };
}

interface HookReply {
  action?: string;
  request?: { headers?: Header[]; query?: string | undefined; path?: string };
  response?: { headers?: Header[]; replacements?: BodyReplacement[]; setBody?: Buffer };
}

const headerMapSchema = z.record(z.string(), z.array(headerValueSchema)).nullish();
const replySchema = z.strictObject({
  action: z.enum(["", "allow", "block", "mutate"]).nullish(),
  request: z.strictObject({ headers: headerMapSchema, query: z.record(z.string(), z.string()).nullish(), path: z.string().nullish() }).nullish(),
  response: z.strictObject({
    headers: headerMapSchema,
    body_replacements: z.array(z.strictObject({ find: z.string().min(1), replace: z.string().nullish() })).nullish(),
    set_body_base64: z.string().nullish(),
  }).nullish(),
  error: z.string().nullish(),
});

/** A callback's reply, checked as strictly as a rule is at create; or why it cannot be applied. */
export function parseReply(raw: unknown, phase: "before" | "after", secretIn: (t: string) => string | undefined): HookReply | { problem: string } {
  const parsed = replySchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    return { problem: `its answer is not valid: ${issue.path.join(".") || "answer"}: ${issue.message}` };
  }
  const p = parsed.data;
  if (p.error) return { problem: `it reported: ${p.error}` };
  if (phase === "before" && p.response) return { problem: "a before-phase callback answered a response change" };
  if (phase === "after" && p.request) return { problem: "an after-phase callback answered a request change" };
  const out: HookReply = {};
  if (p.action) out.action = p.action;
  const texts: string[] = [];
  const headers = (map: Record<string, string[]> | null | undefined, what: string): Header[] | { problem: string } | undefined => {
    if (!map) return undefined;
    const list: Header[] = [];
    for (const [k, vs] of Object.entries(map)) {
      if (!isHeaderName(k)) return { problem: `${what}: ${JSON.stringify(k)} is not a valid header name` };
      if (PROXY_OWNED_HEADERS.has(k.toLowerCase())) return { problem: `${what} names ${k}, which the proxy states itself` };
      for (const v of vs) list.push([canonicalHeaderKey(k), v]);
      texts.push(k, ...vs);
    }
    const hosts = list.filter(([k]) => k === "Host");
    if (hosts.length > 1) return { problem: `${what} has more than one Host` };
    if (hosts[0] && badHost(hosts[0][1])) return { problem: `${what}: Host ${badHost(hosts[0][1])}` };
    return list;
  };
  if (p.request) {
    const h = headers(p.request.headers, "request.headers");
    if (h && "problem" in h) return h;
    if (p.request.path !== undefined && p.request.path !== null && badPath(p.request.path)) return { problem: `request.path ${badPath(p.request.path)}` };
    out.request = {
      ...(h ? { headers: h } : {}),
      ...(p.request.query ? { query: new URLSearchParams(p.request.query).toString() } : {}),
      ...(p.request.path ? { path: p.request.path } : {}),
    };
    texts.push(...Object.entries(p.request.query ?? {}).flat(), p.request.path ?? "");
  }
  if (p.response) {
    const h = headers(p.response.headers, "response.headers");
    if (h && "problem" in h) return h;
    const replacements = (p.response.body_replacements ?? []).map((b) => ({ find: b.find, replace: b.replace ?? "" }));
    texts.push(...replacements.flatMap((b) => [b.find, b.replace]));
    out.response = { ...(h ? { headers: h } : {}), replacements };
    if (typeof p.response.set_body_base64 === "string") {
      const body = Buffer.from(p.response.set_body_base64, "base64");
      texts.push(body.toString("utf8"));
      out.response.setBody = body;
    }
  }
  const secret = texts.map(secretIn).find(Boolean);
  if (secret) return { problem: `its answer holds the real value of secret ${secret} (a callback may use placeholders only)` };
  return out;
}
