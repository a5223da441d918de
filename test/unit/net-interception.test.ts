// Network interception rules (spec 5.7) without a sandbox: the create field's checks, rule
// matching and request/answer changes, the streamed body rewrites, callback replies (checked,
// fail-open), and the SDK's wire form and hook socket.
import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { guestAnswer } from "../../src/engine/net/guest-answer.js";
import { BodyRewrite, replaceInBuffer, SseDataRewrite } from "../../src/engine/net/interception/body-rewrite.js";
import { callHook } from "../../src/engine/net/interception/hook-call.js";
import { canonicalHeaderKey, hostOf, Interceptor, parseReply, type RequestView } from "../../src/engine/net/interception/interceptor.js";
import { compilePathGlob } from "../../src/engine/net/interception/path-glob.js";
import { parseCreateParams } from "../../src/engine/sandbox/create.js";
import { NetworkHookServer, networkInterceptionWire } from "../../src/sdk/network-hooks.js";
import { Sandbox } from "../../src/sdk/index.js";
import { toCreateParams } from "../../src/sdk/wire.js";
import type { Transform } from "node:stream";

const PH = "SANDBOX_SECRET_0123456789abcdef0123456789abcdef";
const noSecrets = { secretIn: () => undefined, log: () => {} };
const request = (over: Partial<RequestView> = {}): RequestView => ({ method: "GET", path: "/anything/v1", query: "a=1&b=2", headers: [["Host", "api.test"], ["X-Drop", "x"], ["Authorization", `Bearer ${PH}`]], ...over });
const create = (interception: unknown, network: Record<string, unknown> = {}) => parseCreateParams({ image: "i", network: { allowed_hosts: ["api.test"], interception, ...network } });

function run(t: Transform, pieces: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    t.on("data", (d: Buffer) => out.push(d)).on("end", () => resolve(Buffer.concat(out).toString())).on("error", reject);
    for (const p of pieces) t.write(Buffer.from(p));
    t.end();
  });
}

describe("path globs (Go path.Match)", () => {
  test("* and ? stay within a segment, classes and escapes work, bad patterns are errors", () => {
    const m = (p: string, s: string) => (compilePathGlob(p) as (x: string) => boolean)(s);
    assert.ok(m("/anything/*", "/anything/v1"));
    assert.ok(!m("/anything/*", "/anything/v1/x"));
    assert.ok(m("/v?", "/v1") && !m("/v?", "/v/"));
    assert.ok(m("/[a-c]x", "/bx") && !m("/[^a-c]x", "/bx") && m("/[^a-c]x", "/dx"));
    assert.ok(m("/a\\*b", "/a*b") && !m("/a\\*b", "/axb"));
    assert.ok(m("/x.json", "/x.json") && !m("/x.json", "/xajson"));
    for (const bad of ["/[", "/[]", "/a\\"]) assert.ok(compilePathGlob(bad) instanceof Error, bad);
  });
});

describe("network.interception create field", () => {
  test("a valid config is kept, and forces the sealed network", () => {
    const { config } = parseCreateParams({ image: "i", network: { interception: { rules: [{ action: "block", hosts: ["x.test"] }] } } });
    assert.equal(config.network.intercept, true);
    assert.deepEqual(config.network.interception?.rules?.[0], { action: "block", hosts: ["x.test"] });
    assert.equal(parseCreateParams({ image: "i", network: { intercept: true } }).config.network.intercept, true);
  });

  test("what a rule cannot do is refused by name", () => {
    const refused: Array<[unknown, RegExp]> = [
      [{ rules: [{ phase: "after", set_headers: { A: "b" } }] }, /rules\.0\.set_headers: applies only to phase before/],
      [{ rules: [{ body_replacements: [{ find: "a" }] }] }, /rules\.0\.body_replacements: applies only to phase after/],
      [{ rules: [{ set_headers: { "Content-Length": "0" } }] }, /Content-Length is stated by the proxy/],
      [{ rules: [{ delete_headers: ["transfer-encoding"] }] }, /transfer-encoding is stated by the proxy/],
      [{ rules: [{ delete_headers: ["Host"] }] }, /Host cannot be deleted/],
      [{ rules: [{ set_headers: { Host: "other.test:8080" } }] }, /Host "other.test:8080" is not a host name/],
      [{ rules: [{ set_headers: { "X-A": "a\r\nX-B: b" } }] }, /may not contain CR, LF or NUL/],
      [{ rules: [{ set_headers: { "X A": "a" } }] }, /is not a valid header name/],
      [{ rules: [{ rewrite_path: "http://evil.test/x" }] }, /does not start with \//],
      [{ rules: [{ rewrite_path: "/a?b=1" }] }, /contains \? or #/],
      [{ rules: [{ path: "/[" }] }, /unclosed or empty \[ class/],
      [{ rules: [{ action: "drop" }] }, /action must be "allow", "block" or "mutate"/],
      [{ rules: [{ phase: "during" }] }, /phase must be "before" or "after"/],
      [{ rules: [{ callback_id: "h1", action: "block" }], callback_socket: "/tmp/x.sock" }, /callback_id must have action allow/],
      [{ rules: [{ callback_id: "h1" }] }, /needs network.interception.callback_socket/],
      [{ callback_socket: "/tmp/x.sock" }, /no rule has a callback_id/],
      [{ rules: [{ callback_id: "h", timeout_ms: 60_001 }], callback_socket: "/x" }, /timeout_ms must be at most 60000/],
      [{ rules: [{ unknown: 1 }] }, /unknown field network.interception.rules.0.unknown/],
    ];
    for (const [interception, want] of refused) assert.throws(() => create(interception), want, JSON.stringify(interception));
  });

  test("a rule may carry a secret's placeholder, never its value", () => {
    const secrets = { KEY: { value: "sk-live-1", hosts: ["api.test"] } };
    assert.throws(() => create({ rules: [{ set_headers: { Authorization: "Bearer sk-live-1" } }] }, { secrets }), /holds the real value of secret KEY/);
    assert.doesNotThrow(() => create({ rules: [{ set_headers: { Authorization: `Bearer ${PH}` } }] }, { secrets }));
  });

  test("no_network refuses intercept and interception", () => {
    assert.throws(() => parseCreateParams({ image: "i", network: { no_network: true, intercept: true } }), /no_network cannot be combined with network.intercept/);
  });
});

describe("rules on requests and answers", () => {
  test("before rules change headers (canonical names), query and path, in order; the Host header names the target", async () => {
    const i = new Interceptor(create({
      rules: [
        { hosts: ["*.test"], methods: ["get"], path: "/anything/*", set_headers: { "x-added": "1" }, delete_headers: ["x-drop"], set_query: { c: "3 4" }, delete_query: ["a"], rewrite_path: "/anything/v2" },
        { path: "/anything/v2", set_headers: { "X-Second": "saw v2" } },
        { methods: ["POST"], set_headers: { "X-Never": "1" } },
        { set_headers: { Host: "other.test" }, hosts: ["api.test"] },
      ],
    }).config.network.interception, noSecrets);
    const req = request();
    assert.equal(await i.before(req, "api.test"), undefined);
    assert.equal(req.path, "/anything/v2");
    assert.equal(req.query, "b=2&c=3+4");
    assert.deepEqual(req.headers, [["Authorization", `Bearer ${PH}`], ["X-Added", "1"], ["X-Second", "saw v2"], ["Host", "other.test"]]);
    assert.equal(hostOf(req, "api.test"), "other.test");
  });

  test("block stops at the first matching rule; a rule without effect is dropped", async () => {
    const i = new Interceptor(create({ rules: [{ action: "allow" }, { path: "/admin/*", action: "block", name: "no-admin" }] }).config.network.interception, noSecrets);
    assert.deepEqual(await i.before(request({ path: "/admin/x" }), "api.test"), { blockedBy: "no-admin" });
    assert.equal(await i.before(request(), "api.test"), undefined);
  });

  test("after rules change response headers and collect body replacements in order", async () => {
    const i = new Interceptor(create({
      rules: [
        { phase: "after", set_response_headers: { "x-by": "rule" }, delete_response_headers: ["X-Upstream"], body_replacements: [{ find: "foo", replace: "bar" }] },
        { phase: "after", body_replacements: [{ find: "bar", replace: "baz" }] },
      ],
    }).config.network.interception, noSecrets);
    const res = { status: 200, headers: [["X-Upstream", "1"], ["Content-Type", "text/plain"]] as Array<[string, string]>, isSSE: false };
    const plan = await i.after(request(), "api.test", res);
    assert.deepEqual(plan, { replacements: [{ find: "foo", replace: "bar" }, { find: "bar", replace: "baz" }] });
    assert.deepEqual(res.headers, [["Content-Type", "text/plain"], ["X-By", "rule"]]);
    assert.ok(i.mayRewriteBody(request(), "api.test"));
  });

  test("header names are canonicalised as upstream's engine does", () => {
    assert.equal(canonicalHeaderKey("x-api-KEY"), "X-Api-Key");
    assert.equal(canonicalHeaderKey("content-type"), "Content-Type");
  });
});

describe("body rewrites", () => {
  test("whole body: replacements in order, matches split across chunks", async () => {
    const reps = [{ find: "foo", replace: "bar" }, { find: "bar!", replace: "ok" }];
    assert.equal(await run(new BodyRewrite(reps), ["f", "oo! and fo", "o", "!"]), "ok and ok");
    assert.equal(replaceInBuffer(Buffer.from("foo!"), reps).toString(), "ok");
  });

  test("SSE: only data values change, lines and events stream as they come", async () => {
    const reps = [{ find: "id", replace: "sid" }];
    const text = 'id: 1\ndata: {"id": 1}\r\nevent: id\rdata:id\n\ndat\n';
    const want = 'id: 1\ndata: {"sid": 1}\r\nevent: id\rdata:sid\n\ndat\n';
    assert.equal(await run(new SseDataRewrite(reps), [text]), want);
    for (let cut = 0; cut <= text.length; cut++) assert.equal(await run(new SseDataRewrite(reps), [text.slice(0, cut), text.slice(cut)]), want, `cut at ${cut}`);
    assert.equal(await run(new SseDataRewrite(reps), text.split("")), want);
    // An event goes out whole as soon as its line ends: nothing of it is held back.
    const t = new SseDataRewrite(reps);
    const seen: string[] = [];
    t.on("data", (d: Buffer) => seen.push(d.toString()));
    t.write(Buffer.from("data: id\n\n"));
    await new Promise((r) => setImmediate(r));
    assert.equal(seen.join(""), "data: sid\n\n");
  });
});

describe("answers the rules may rewrite", () => {
  test("are decoded (no Content-Length or Content-Encoding left); a coding the proxy cannot decode is refused", async () => {
    const { PassThrough } = await import("node:stream");
    const { gzipSync } = await import("node:zlib");
    const answer = (encoding: string, body: Buffer) => {
      const up = Object.assign(new PassThrough(), {
        headers: { "content-encoding": encoding }, statusMessage: "OK",
        rawHeaders: ["Content-Encoding", encoding, "Content-Length", String(body.length), "X-A", "1"],
      });
      up.end(body);
      return guestAnswer(up as never, [], true);
    };
    const gz = answer("gzip", gzipSync("foo"));
    assert.ok(!("unscannable" in gz));
    assert.deepEqual(gz.headers, [["X-A", "1"]]);
    assert.equal(await run(new BodyRewrite([{ find: "foo", replace: "bar" }]), [((await gz.body.toArray()) as Buffer[]).join("")]), "bar");
    assert.deepEqual(answer("zstd", Buffer.from("x")), { unscannable: "content coding zstd" });
  });
});

describe("callback replies", () => {
  test("a reply is checked: what cannot apply is a problem (the callback is then skipped)", () => {
    const secretIn = (t: string) => (t.includes("sk-live") ? "KEY" : undefined);
    assert.deepEqual(parseReply({ action: "block" }, "before", secretIn), { action: "block" });
    const ok = parseReply({ request: { headers: { "x-a": ["1", "2"] }, query: { q: "a b" }, path: "/v2" } }, "before", secretIn);
    assert.deepEqual(ok, { request: { headers: [["X-A", "1"], ["X-A", "2"]], query: "q=a+b", path: "/v2" } });
    const problems: Array<[unknown, "before" | "after", RegExp]> = [
      [{ request: { headers: { "Content-Length": ["0"] } } }, "before", /Content-Length, which the proxy states itself/],
      [{ request: { path: "//x?y" } }, "before", /contains \? or #/],
      [{ request: { headers: { Host: ["a.test", "b.test"] } } }, "before", /more than one Host/],
      [{ response: { set_body_base64: "eA==" } }, "before", /before-phase callback answered a response change/],
      [{ request: { path: "/x" } }, "after", /after-phase callback answered a request change/],
      [{ request: { headers: { Authorization: ["Bearer sk-live-1"] } } }, "before", /real value of secret KEY/],
      [{ error: "boom" }, "after", /it reported: boom/],
      [{ action: "explode" }, "after", /answer is not valid: action/],
      ["not an object", "after", /answer is not valid/],
    ];
    for (const [raw, phase, want] of problems) {
      const r = parseReply(raw, phase, secretIn);
      assert.ok("problem" in r && want.test(r.problem), `${JSON.stringify(raw)}: ${JSON.stringify(r)}`);
    }
  });

  test("a slow or silent callback costs its request the timeout, then the request goes on", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ml-hook-"));
    const path = join(dir, "s.sock");
    const server = net.createServer(() => {}).listen(path); // accepts, never answers
    await new Promise((r) => server.once("listening", r));
    try {
      await assert.rejects(callHook(path, {}, 200), /no answer within 200 ms/);
      const lines: string[] = [];
      const i = new Interceptor(create({ rules: [{ callback_id: "h", timeout_ms: 200, set_headers: { "X-Static": "1" } }], callback_socket: path }).config.network.interception, { secretIn: () => undefined, log: (l) => lines.push(l) });
      const req = request();
      assert.equal(await i.before(req, "api.test"), undefined);
      assert.ok(req.headers.some(([k]) => k === "X-Static"));
      assert.match(lines.join("\n"), /callback of rule 1 skipped: no answer within 200 ms/);
      await assert.rejects(callHook(join(dir, "missing.sock"), {}, 1000), /callback socket/);
    } finally {
      server.close();
    }
  });
});

describe("SDK: interception on the wire and the hook socket", () => {
  test("withNetworkInterception sends intercept and the rules with callback ids; options() keeps the hooks", () => {
    const hook = () => ({ action: "block" as const });
    const sb = new Sandbox("img").allowHost("api.test").withNetworkInterception({
      rules: [{ phase: "before", action: "block", hosts: ["x.test"] }, { name: "cb", phase: "after", path: "/r", hook, timeoutMs: 100, bodyReplacements: [{ find: "a" }] }],
    });
    const opts = sb.options();
    assert.equal(opts.networkInterception?.rules?.[1]?.hook, hook);
    const network = toCreateParams(opts).network as Record<string, unknown>;
    assert.equal(network.intercept, true);
    assert.deepEqual(network.interception, {
      rules: [{ phase: "before", action: "block", hosts: ["x.test"] }, { name: "cb", phase: "after", path: "/r", body_replacements: [{ find: "a" }], timeout_ms: 100, callback_id: "network_hook_2" }],
    });
    assert.deepEqual((toCreateParams(new Sandbox("img").withNetworkInterception().options()).network as Record<string, unknown>).intercept, true);
    assert.throws(() => new Sandbox("img").withNetworkInterception({ rules: [{ hook, action: "block" }] }), /callback hooks cannot set action=block/);
  });

  test("the hook socket answers one JSON line per connection; a throwing or slow hook answers an error", async () => {
    const { hooks } = networkInterceptionWire({
      rules: [
        { phase: "after", hook: (r) => ({ response: { headers: { "X-Status": [String(r.statusCode)] }, setBody: "new" } }) },
        { hook: () => { throw new Error("nope"); } },
        { hook: () => new Promise(() => {}), timeoutMs: 50 },
      ],
    });
    const server = await NetworkHookServer.start(hooks);
    try {
      const call = (body: object) => callHook(server.socketPath, body, 5000);
      assert.deepEqual(await call({ callback_id: "network_hook_1", phase: "after", status_code: 200 }), { response: { headers: { "X-Status": ["200"] }, set_body_base64: Buffer.from("new").toString("base64") } });
      assert.deepEqual(await call({ callback_id: "network_hook_1", phase: "before" }), { error: "this hook is for phase after, not before" });
      assert.deepEqual(await call({ callback_id: "network_hook_2", phase: "before" }), { error: "nope" });
      assert.deepEqual(await call({ callback_id: "network_hook_3", phase: "before" }), { error: "network hook callback timed out" });
      assert.deepEqual(await call({ callback_id: "nope" }), { error: 'unknown callback_id "nope"' });
    } finally {
      await server.close();
    }
  });
});
