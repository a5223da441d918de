// Network interception rules and hooks (spec 5.7) end to end, on whichever engine
// $MATCHLOCK_BACKEND names: a real sandbox's requests through the engine's proxy to servers in
// a network namespace this test creates (test/helpers/net-lab.ts), with rules that block and
// change requests and answers, SDK hooks called over the callback socket, and the seal's checks
// after the rules (allow-list, secrets).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Sandbox, type Client, type NetworkHookRequest } from "../../src/sdk/index.js";
import { BUSYBOX, newClient, PYTHON, setUpE2E } from "../helpers/e2e.js";
import { FETCH_PY, STREAM_PY, type FetchResult } from "../helpers/guest-net-scripts.js";
import { startNetLab, type NetLab } from "../helpers/net-lab.js";

const SECRET = "sk-intercept-4d1f0b";
const sha256 = (v: string) => createHash("sha256").update(v).digest("hex");
const RULE = "blocked by an interception rule";
type NetEvent = Record<string, unknown>;

describe("network interception rules and hooks", () => {
  let lab: NetLab;
  let client: Client;
  let placeholder: string;
  const events: NetEvent[] = [];
  const hooked: NetworkHookRequest[] = [];

  const fetch = async (url: string, ...headers: string[]): Promise<FetchResult> => {
    const r = await client.exec(`python3 /tmp/fetch.py ${[url, ...headers].map((a) => `"${a}"`).join(" ")}`);
    assert.equal(r.exitCode, 0, r.stderr);
    return JSON.parse(r.stdout) as FetchResult;
  };
  const echoed = (r: FetchResult) => {
    assert.equal(r.status, 200, JSON.stringify(r));
    return JSON.parse(r.body!) as { url: string; headers: Record<string, string>; authSha: string };
  };

  before(async () => {
    await setUpE2E();
    lab = await startNetLab();
    client = newClient();
    client.onEvent((e) => events.push((e as unknown as { network?: NetEvent }).network ?? {}));
    await client.launch(
      new Sandbox(PYTHON).allowHost("allowed.test", "other.test", "sub.wild.test").addSecret("API_KEY", SECRET, "secret.test")
        .allowPrivateIPs() // the lab lives on 10.254.x.x
        .withNetworkInterception({
          rules: [
            { name: "mutate-echo", hosts: ["allowed.test"], methods: ["get"], path: "/echo/*", setHeaders: { "x-added": "yes" }, deleteHeaders: ["X-Drop"], setQuery: { c: "3" }, deleteQuery: ["a"], rewritePath: "/echo" },
            { name: "no-blocked", hosts: ["other.test"], path: "/blocked/*", action: "block" },
            { name: "after-static", phase: "after", hosts: ["allowed.test"], path: "/response-headers", setResponseHeaders: { "x-by": "rule" }, deleteResponseHeaders: ["X-Upstream"], bodyReplacements: [{ find: "foo", replace: "bar" }] },
            { name: "sse", phase: "after", hosts: ["allowed.test"], path: "/sse", bodyReplacements: [{ find: "event", replace: "evt" }] },
            { name: "retarget", hosts: ["allowed.test"], path: "/retarget", setHeaders: { Host: "other.test" }, rewritePath: "/echo" },
            { name: "retarget-denied", hosts: ["allowed.test"], path: "/retarget-denied", setHeaders: { Host: "raw.test" } },
            {
              name: "hooked", hosts: ["secret.test"], path: "/hooked/*",
              hook: (r) => {
                hooked.push(r);
                return { request: { headers: { ...r.requestHeaders, "X-Hooked": ["1"] }, path: "/echo" } };
              },
            },
            {
              name: "callback-example", phase: "after", hosts: ["sub.wild.test"], path: "/response-headers",
              hook: (r) => (r.statusCode !== 200 ? null : { action: "mutate", response: { headers: { "X-Intercepted": ["callback"] }, setBody: Buffer.from('{"msg":"from-callback"}') } }),
            },
            // Never answers: the request waits timeoutMs, then goes on without it.
            { name: "slow", hosts: ["allowed.test"], path: "/slow/*", rewritePath: "/echo", timeoutMs: 1000, hook: () => new Promise(() => {}) },
            // Answers what the proxy must not apply (a framing header): skipped.
            { name: "hostile", hosts: ["allowed.test"], path: "/hostile/*", rewritePath: "/echo", hook: () => ({ request: { headers: { "Content-Length": ["0"], "X-Evil": ["1"] } } }) },
          ],
        }),
    );
    await client.writeFile("/tmp/fetch.py", FETCH_PY);
    await client.writeFile("/tmp/stream.py", STREAM_PY);
    placeholder = (await client.exec("echo $API_KEY")).stdout.trim();
    assert.match(placeholder, /^SANDBOX_SECRET_[0-9a-f]{32}$/);
  });
  after(async () => {
    await client?.close();
    await client?.remove();
    await lab?.stop();
  });

  for (const scheme of ["http", "https"]) {
    test(`before rules set and delete headers, query parameters and rewrite the path (${scheme})`, async () => {
      const e = echoed(await fetch(`${scheme}://allowed.test/echo/v1?a=1&b=2`, "X-Drop:gone", "X-Keep:kept"));
      assert.equal(e.url, "/echo?b=2&c=3");
      assert.equal(e.headers["x-added"], "yes");
      assert.equal(e.headers["x-keep"], "kept");
      assert.equal(e.headers["x-drop"], undefined);
    });
  }

  test("a block rule answers 403 Blocked by policy, with an event; other paths pass", async () => {
    const r = await fetch("https://other.test/blocked/x");
    assert.equal(r.status, 403);
    assert.equal(r.body, "Blocked by policy");
    assert.equal((await fetch("https://other.test/hello")).body, "hello from other.test\n");
    const ev = events.find((e) => e.block_reason === RULE && e.host === "other.test");
    assert.ok(ev, JSON.stringify(events));
    assert.equal(ev.status_code, 403);
    assert.equal(ev.blocked, true);
  });

  test("after rules change response headers and replace in the body, also in a body the server compressed", async () => {
    for (const enc of ["identity", "gzip"]) {
      const r = await fetch(`http://allowed.test/response-headers?X-Upstream=1&body=foo&enc=${enc}`);
      assert.equal(r.status, 200, JSON.stringify(r));
      assert.equal(r.headers!["x-by"], "rule");
      assert.equal(r.headers!["x-upstream"], undefined);
      assert.notEqual(r.headers!["content-encoding"], "gzip", "decoded for the rules");
      assert.deepEqual(JSON.parse(r.body!), { "X-Upstream": "1", body: "bar", enc });
    }
  });

  test("server-sent events: data lines are rewritten as they stream (the first event arrives before the server sends the rest)", async () => {
    const r = await client.exec("python3 /tmp/stream.py allowed.test intercept-sse");
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, "text/event-stream data: evt 0 2 released\nchunked 5\n");
  });

  test("a rule may send a request to another allowed host, never to one the allow-list lacks", async () => {
    assert.equal(echoed(await fetch("https://allowed.test/retarget")).headers.host, "other.test");
    const denied = await fetch("https://allowed.test/retarget-denied");
    assert.equal(denied.status, 403);
    assert.ok(events.some((e) => e.block_reason === "host not in allowlist" && e.url === "/retarget-denied"), JSON.stringify(events));
  });

  test("a hook sees the placeholder, never the secret's value; the value is substituted after it", async () => {
    const e = echoed(await fetch("https://secret.test/hooked/x?q=1", `Authorization:Bearer ${placeholder}`));
    assert.equal(e.url, "/echo?q=1");
    assert.equal(e.headers["x-hooked"], "1");
    assert.equal(e.authSha, sha256(`Bearer ${SECRET}`), "the upstream got the real value");
    const seen = hooked.at(-1)!;
    assert.deepEqual(seen.requestHeaders?.Authorization, [`Bearer ${placeholder}`]);
    assert.equal(seen.host, "secret.test");
    assert.equal(seen.path, "/hooked/x");
    assert.deepEqual(seen.query, { q: "1" });
    assert.ok(!JSON.stringify(hooked).includes(SECRET));
  });

  test("an after hook replaces the answer's headers and body (upstream's network_interception example)", async () => {
    const r = await fetch("http://sub.wild.test/response-headers?X-Upstream=1&body=foo");
    assert.equal(r.status, 200);
    assert.equal(r.body, '{"msg":"from-callback"}');
    assert.equal(r.headers!["x-intercepted"], "callback");
    assert.equal(r.headers!["x-upstream"], undefined);
  });

  test("a hook that never answers or answers what cannot apply is skipped: the request goes on (fail-open)", async () => {
    const slow = echoed(await fetch("http://allowed.test/slow/x"));
    assert.equal(slow.url, "/echo");
    const hostile = echoed(await fetch("http://allowed.test/hostile/x"));
    assert.equal(hostile.url, "/echo");
    assert.equal(hostile.headers["x-evil"], undefined);
  });
});

describe("withNetworkInterception() without allowed hosts", () => {
  let client: Client;
  before(async () => {
    await setUpE2E();
    client = newClient();
    await client.launch(new Sandbox(BUSYBOX).withNetworkInterception());
  });
  after(async () => {
    await client?.close();
    await client?.remove();
  });

  test("the sandbox gets the sealed network (the engine's DNS), which denies every host", async () => {
    const resolv = await client.exec("cat /etc/resolv.conf");
    assert.match(resolv.stdout, /^nameserver 10\.200\.\d+\.\d+$/m);
    // Busybox's own resolver (its wget resolves through static glibc, which crashes without NSS).
    const r = await client.exec("nslookup allowed.test 2>&1; echo exit=$?");
    assert.match(r.stdout, /NXDOMAIN[^]*exit=1/);
  });
});
