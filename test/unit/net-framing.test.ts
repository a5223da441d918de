// The proxy's request framing rules and how it scans answers from a secret's host (decoding
// compressed bodies first). The attacks themselves, through a real sandbox, are in
// test/e2e/network-proxy-attacks.test.ts.
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import zlib from "node:zlib";
import { contentDecoders } from "../../src/engine/net/content-decoding.js";
import { guestAnswer } from "../../src/engine/net/guest-answer.js";
import { parserErrorReply, requestFraming } from "../../src/engine/net/request-framing.js";

const req = (method: string, headers: string[], httpVersion = "1.1") => ({ method, httpVersion, rawHeaders: headers });

describe("request framing", () => {
  test("bodies are framed as received: none, Content-Length, or chunked", () => {
    assert.deepEqual(requestFraming(req("GET", ["Host", "a"]), false), { body: "none" });
    assert.deepEqual(requestFraming(req("GET", ["Host", "a", "Content-Length", "0"]), false), { body: "none" });
    assert.deepEqual(requestFraming(req("GET", ["Host", "a", "Content-Length", "12"]), false), { body: "length" });
    assert.deepEqual(requestFraming(req("POST", ["Host", "a", "Transfer-Encoding", "Chunked"]), false), { body: "chunked" });
  });

  test("a chunked body on a method servers read as bodiless is refused", () => {
    for (const method of ["GET", "HEAD", "DELETE", "OPTIONS", "TRACE"]) {
      const f = requestFraming(req(method, ["Host", "a", "Transfer-Encoding", "chunked"]), false);
      assert.ok("refused" in f && f.refused.includes(`chunked body on a ${method}`), method);
    }
  });

  test("ambiguous framing is refused", () => {
    const refused = (headers: string[], version = "1.1", upgrade = false) => {
      const f = requestFraming(req("POST", headers, version), upgrade);
      return "refused" in f ? f.refused : "";
    };
    assert.match(refused(["Transfer-Encoding", "chunked", "Content-Length", "5"]), /both Transfer-Encoding and Content-Length/);
    assert.match(refused(["Content-Length", "5", "Content-Length", "5"]), /more than one Content-Length/);
    assert.match(refused(["Content-Length", "5,5"]), /Content-Length "5,5"/);
    assert.match(refused(["Transfer-Encoding", "gzip, chunked"]), /only a single "chunked"/);
    assert.match(refused(["Transfer-Encoding", "chunked", "Transfer-Encoding", "chunked"]), /only a single "chunked"/);
    assert.match(refused(["Transfer-Encoding", "identity"]), /only a single "chunked"/);
    assert.match(refused(["Transfer-Encoding", "chunked"], "1.0"), /HTTP\/1.0/);
    assert.match(refused(["Host", "a", "Host", "b"]), /more than one Host/);
    assert.match(refused(["Content-Length", "3"], "1.1", true), /body on an upgrade/);
  });

  test("a parser error gets a reason the guest can read; a vanished connection gets nothing", () => {
    const err = (code: string, reason?: string) => Object.assign(new Error("Parse Error"), { code, reason });
    assert.deepEqual(parserErrorReply(err("HPE_INVALID_TRANSFER_ENCODING", "Transfer-Encoding can't be present with Content-Length")), {
      status: 400, message: "Transfer-Encoding can't be present with Content-Length",
    });
    assert.equal(parserErrorReply(err("HPE_HEADER_OVERFLOW"))?.status, 431);
    assert.equal(parserErrorReply(err("ECONNRESET")), undefined);
  });
});

describe("answers from a secret's host", () => {
  const VALUE = "sk-stored-value-42";
  const PLACEHOLDER = "SANDBOX_SECRET_0123";
  const redactions = [{ from: Buffer.from(VALUE), to: Buffer.from(PLACEHOLDER) }];
  const body = `{"stored":"${VALUE}","pad":"${"x".repeat(100_000)}","again":"${VALUE}"}`;
  const encode: Record<string, (b: string) => Buffer> = {
    identity: (b) => Buffer.from(b),
    gzip: (b) => zlib.gzipSync(b),
    deflate: (b) => zlib.deflateSync(b),
    br: (b) => zlib.brotliCompressSync(b),
    "gzip, br": (b) => zlib.brotliCompressSync(zlib.gzipSync(b)),
  };
  let server: http.Server;
  let port: number;
  before(async () => {
    server = http.createServer((rq, rs) => {
      const coding = decodeURIComponent(rq.url!.slice(1));
      const data = encode[coding]?.(body) ?? Buffer.from(body);
      rs.writeHead(200, `OK ${VALUE}`, { "Content-Encoding": coding, "Content-Length": data.length, "X-Stored": VALUE, [`X-${VALUE}`]: "1" });
      rs.end(data);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as AddressInfo).port;
  });
  after(() => server.close());

  const fetchAnswer = (coding: string) => new Promise<ReturnType<typeof guestAnswer>>((resolve, reject) => {
    http.get({ host: "127.0.0.1", port, path: `/${encodeURIComponent(coding)}`, agent: false }, (up) => resolve(guestAnswer(up, redactions))).on("error", reject);
  });

  for (const coding of Object.keys(encode)) {
    test(`status, headers and a ${coding} body: decoded and redacted`, async () => {
      const answer = await fetchAnswer(coding);
      assert.ok(!("unscannable" in answer));
      const chunks: Buffer[] = [];
      for await (const c of answer.body) chunks.push(c as Buffer);
      const text = Buffer.concat(chunks).toString();
      assert.equal(text, body.split(VALUE).join(PLACEHOLDER));
      assert.equal(answer.statusMessage, `OK ${PLACEHOLDER}`);
      const names = answer.headers.map(([k]) => k.toLowerCase());
      assert.ok(!names.includes("content-length"), names.join(","));
      assert.equal(names.includes("content-encoding"), coding === "identity", names.join(","));
      assert.ok(!JSON.stringify(answer.headers).includes(VALUE));
      assert.ok(names.includes(`x-${PLACEHOLDER.toLowerCase()}`), names.join(","));
    });
  }

  test("a coding the proxy cannot decode is reported, not passed on", async () => {
    const answer = await fetchAnswer("zstd");
    assert.deepEqual(answer, { unscannable: "content coding zstd" });
    assert.deepEqual(contentDecoders("gzip, gzip, gzip, gzip, gzip"), { unsupported: "5 layers of content coding" });
  });

  test("without redactions the answer passes as it came", async () => {
    const answer = await new Promise<ReturnType<typeof guestAnswer>>((resolve) => {
      http.get({ host: "127.0.0.1", port, path: "/gzip", agent: false }, (up) => resolve(guestAnswer(up, [])));
    });
    assert.ok(!("unscannable" in answer));
    const chunks: Buffer[] = [];
    for await (const c of answer.body) chunks.push(c as Buffer);
    assert.equal(zlib.gunzipSync(Buffer.concat(chunks)).toString(), body);
    assert.ok(answer.headers.some(([k, v]) => k === "Content-Encoding" && v === "gzip"));
  });
});
