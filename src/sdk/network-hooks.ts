// Network interception on the SDK side (protocol spec 5.7): the rules' wire form, and the unix
// socket where the engine asks this process's hooks about each matching request (one JSON line
// in, one JSON line out per connection). A hook that throws or takes longer than its
// timeoutMs answers an error: the engine then skips it and the request goes on (fail-open).
import { mkdtemp, rm } from "node:fs/promises";
import net, { type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MatchlockError } from "./errors.js";
import { waitAtMost } from "./wait-at-most.js";
import type { BinaryLike, NetworkHookFunc, NetworkHookPhase, NetworkHookRule, NetworkInterceptionConfig } from "./types.js";

/** A hook as the socket serves it, by its callback id. */
interface HookEntry {
  phase: NetworkHookPhase;
  hook: NetworkHookFunc;
  timeoutMs: number;
}

/** Bound on what the engine sends per call: a request's head, so far below this. */
const MAX_CALL_BYTES = 4 * 1024 * 1024;

const RULE_KEYS: ReadonlySet<string> = new Set<keyof NetworkHookRule>([
  "name", "phase", "hosts", "methods", "path", "action", "setHeaders", "deleteHeaders", "setQuery", "deleteQuery", "rewritePath",
  "setResponseHeaders", "deleteResponseHeaders", "bodyReplacements", "timeoutMs", "hook",
]);

/** Checks a config locally (the engine checks the rest): the shape, and what a hook rule may ask. */
export function checkNetworkInterception(cfg: NetworkInterceptionConfig | undefined): NetworkInterceptionConfig | undefined {
  if (cfg === undefined || cfg === null) return undefined;
  if (typeof cfg !== "object" || Array.isArray(cfg)) throw invalid("network interception config must be an object");
  const unknown = Object.keys(cfg).filter((k) => k !== "rules");
  if (unknown.length) throw invalid(`unknown network interception field ${unknown.join(", ")}`);
  if (cfg.rules !== undefined && !Array.isArray(cfg.rules)) throw invalid("network interception rules must be an array");
  for (const [i, r] of (cfg.rules ?? []).entries()) {
    const where = `network interception rule ${i + 1}${r?.name ? ` (${r.name})` : ""}`;
    if (r === null || typeof r !== "object") throw invalid(`${where} must be an object`);
    const bad = Object.keys(r).filter((k) => !RULE_KEYS.has(k));
    if (bad.length) throw invalid(`${where}: unknown field ${bad.join(", ")}`);
    if (r.phase !== undefined && !["", "before", "after"].includes(r.phase)) throw invalid(`${where}: phase must be "before" or "after"`);
    if (r.action !== undefined && !["", "allow", "block", "mutate"].includes(r.action)) throw invalid(`${where}: action must be "allow", "block" or "mutate"`);
    if (r.timeoutMs !== undefined && !(Number.isInteger(r.timeoutMs) && r.timeoutMs >= 0)) throw invalid(`${where}: timeoutMs must be a non-negative integer`);
    if (r.hook !== undefined && typeof r.hook !== "function") throw invalid(`${where}: hook must be a function`);
    if (r.hook && r.action && r.action !== "allow") throw invalid(`${where}: callback hooks cannot set action=${r.action}`);
  }
  return cfg;
}

/** The wire `network.interception` (without callback_socket, which the client adds), and the hooks by callback id. */
export function networkInterceptionWire(cfg: NetworkInterceptionConfig | undefined): { wire: Record<string, unknown>; hooks: Map<string, HookEntry> } {
  const hooks = new Map<string, HookEntry>();
  const rules = (cfg?.rules ?? []).map((r, i) => {
    const w: Record<string, unknown> = {};
    const fields: Record<string, unknown> = {
      name: r.name, phase: r.phase, hosts: r.hosts, methods: r.methods, path: r.path, action: r.action,
      set_headers: r.setHeaders, delete_headers: r.deleteHeaders, set_query: r.setQuery, delete_query: r.deleteQuery, rewrite_path: r.rewritePath,
      set_response_headers: r.setResponseHeaders, delete_response_headers: r.deleteResponseHeaders,
      body_replacements: r.bodyReplacements?.map((b) => ({ find: b.find, ...(b.replace ? { replace: b.replace } : {}) })),
    };
    // As upstream's SDK: a key goes on the wire only when it says something.
    for (const [key, v] of Object.entries(fields)) {
      const empty = v === undefined || v === null || v === "" || (Array.isArray(v) && !v.length) || (typeof v === "object" && !Array.isArray(v) && !Object.keys(v as object).length);
      if (!empty) w[key] = v;
    }
    if (r.timeoutMs) w.timeout_ms = r.timeoutMs;
    if (r.hook) {
      const id = `network_hook_${i + 1}`;
      w.callback_id = id;
      hooks.set(id, { phase: r.phase ?? "", hook: r.hook, timeoutMs: r.timeoutMs ?? 0 });
    }
    return w;
  });
  return { wire: rules.length ? { rules } : {}, hooks };
}

/** The socket the engine calls the hooks through; one per created sandbox. */
export class NetworkHookServer {
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server, private readonly dir: string, readonly socketPath: string, private readonly hooks: Map<string, HookEntry>) {
    server.on("connection", (s) => this.serve(s));
  }

  static async start(hooks: Map<string, HookEntry>): Promise<NetworkHookServer> {
    const dir = await mkdtemp(join(tmpdir(), "matchlock-network-hook-"));
    const socketPath = join(dir, "hook.sock");
    const server = net.createServer();
    const hookServer = new NetworkHookServer(server, dir, socketPath, hooks);
    await new Promise<void>((resolve, reject) => server.once("error", reject).listen(socketPath, resolve));
    server.unref(); // a client never closed must not keep the process alive
    return hookServer;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.dir, { recursive: true, force: true });
  }

  private serve(socket: Socket): void {
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    const parts: Buffer[] = [];
    let size = 0;
    const onData = (d: Buffer) => {
      const nl = d.indexOf(10);
      parts.push(nl >= 0 ? d.subarray(0, nl) : d);
      size += d.length;
      if (size > MAX_CALL_BYTES) return void socket.destroy();
      if (nl < 0) return;
      socket.off("data", onData);
      void this.answer(Buffer.concat(parts).toString("utf8")).then((reply) => socket.end(JSON.stringify(reply) + "\n"));
    };
    socket.on("data", onData);
  }

  private async answer(line: string): Promise<Record<string, unknown>> {
    let call: Record<string, unknown>;
    try {
      call = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return { error: "the call is not JSON" };
    }
    const entry = this.hooks.get(String(call.callback_id));
    if (!entry) return { error: `unknown callback_id ${JSON.stringify(call.callback_id)}` };
    const phase = String(call.phase ?? "").toLowerCase() as NetworkHookPhase;
    if (entry.phase && entry.phase !== phase) return { error: `this hook is for phase ${entry.phase}, not ${phase}` };
    const request = {
      phase, host: String(call.host ?? ""), method: String(call.method ?? ""), path: String(call.path ?? ""),
      query: stringMap(call.query), requestHeaders: listMap(call.request_headers),
      statusCode: typeof call.status_code === "number" ? call.status_code : 0,
      responseHeaders: listMap(call.response_headers), isSSE: call.is_sse === true,
    };
    try {
      const run = Promise.resolve(entry.hook(request));
      const result = await waitAtMost(run, entry.timeoutMs, () => new Error("network hook callback timed out"));
      return replyOf(result ?? undefined);
    } catch (err) {
      return { error: err instanceof Error ? err.message : String(err) };
    }
  }
}

function replyOf(result: Awaited<ReturnType<NetworkHookFunc>>): Record<string, unknown> {
  if (!result) return {};
  const reply: Record<string, unknown> = {};
  if (result.action) reply.action = result.action;
  const req = result.request;
  if (req) {
    const r: Record<string, unknown> = {};
    if (req.headers) r.headers = req.headers;
    if (req.query) r.query = req.query;
    if (req.path) r.path = req.path;
    if (Object.keys(r).length) reply.request = r;
  }
  const res = result.response;
  if (res) {
    const r: Record<string, unknown> = {};
    if (res.headers) r.headers = res.headers;
    if (res.bodyReplacements?.length) r.body_replacements = res.bodyReplacements.map((b) => ({ find: b.find, replace: b.replace ?? "" }));
    if (res.setBody !== undefined && res.setBody !== null) r.set_body_base64 = bytesOf(res.setBody).toString("base64");
    if (Object.keys(r).length) reply.response = r;
  }
  return reply;
}

function bytesOf(b: BinaryLike): Buffer {
  if (typeof b === "string") return Buffer.from(b, "utf8");
  if (b instanceof ArrayBuffer) return Buffer.from(b);
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function stringMap(v: unknown): Record<string, string> {
  if (!v || typeof v !== "object") return {};
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, String(x)]));
}

/** Header maps: a scalar becomes a one-element list. */
function listMap(v: unknown): Record<string, string[]> {
  if (!v || typeof v !== "object") return {};
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, Array.isArray(x) ? x.map(String) : [String(x)]]));
}

function invalid(message: string): MatchlockError {
  return new MatchlockError(message, { kind: "invalid_argument" });
}
