// The proxy's byte-level pieces: streaming replacement, websocket frame rewriting, first-byte
// sniffing (the conntrack lookup has its own file).
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import net, { type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { after, describe, test } from "node:test";
import { isHttpResponse, MAX_SNIFF_BYTES, sniff, sniffAtEnd } from "../../src/engine/net/first-bytes.js";
import { firstSpeaker, type FirstSpeaker } from "../../src/engine/net/port-sniffer.js";
import { ForbiddenBytesError, StreamReplacer } from "../../src/engine/net/stream-replace.js";
import { encodeHeader, parseHeader, unmask, WebSocketFrameRewriter, WebSocketProtocolError } from "../../src/engine/net/websocket-frames.js";

const PH = "SANDBOX_SECRET_0123456789abcdef0123456789abcdef";
const VALUE = "sk-real";
const OTHER = "SANDBOX_SECRET_ffffffffffffffffffffffffffffffff";

function replaceAll(pieces: string[], r = new StreamReplacer([{ from: Buffer.from(PH), to: Buffer.from(VALUE) }])): string {
  return Buffer.concat([...pieces.map((p) => r.push(Buffer.from(p))), r.flush()]).toString();
}

describe("StreamReplacer", () => {
  test("replaces matches whole and split at every possible point", () => {
    const text = `a=${PH}&b=${PH}.`;
    const want = `a=${VALUE}&b=${VALUE}.`;
    assert.equal(replaceAll([text]), want);
    for (let cut = 0; cut <= text.length; cut++) assert.equal(replaceAll([text.slice(0, cut), text.slice(cut)]), want, `cut at ${cut}`);
    assert.equal(replaceAll(text.split("")), want);
  });

  test("holds back only an end that could start a match: a streamed event goes out at once", () => {
    const r = new StreamReplacer([{ from: Buffer.from(PH), to: Buffer.from(VALUE) }]);
    assert.equal(r.push(Buffer.from("data: event 0\n\n")).toString(), "data: event 0\n\n");
    assert.equal(r.push(Buffer.from(`x ${PH.slice(0, 20)}`)).toString(), "x ");
    assert.equal(r.push(Buffer.from(PH[20]!)).toString(), "", "still a possible start");
    assert.equal(r.push(Buffer.from("!")).toString(), `${PH.slice(0, 21)}!`, "no longer one");
    assert.equal(r.push(Buffer.from("x S")).toString(), "x ", "an end that is the first byte of a start is held");
    // Overlapping candidates: the longest end that is a start is held.
    const o = new StreamReplacer([{ from: Buffer.from("aab"), to: Buffer.from("X") }]);
    assert.equal(o.push(Buffer.from("caa")).toString(), "c");
    assert.equal(o.push(Buffer.from("b")).toString(), "X");
    assert.equal(o.flush().length, 0);
  });

  test("a forbidden pattern throws before any byte of it is released, even split", () => {
    const r = new StreamReplacer([], [{ bytes: Buffer.from(OTHER), name: "KEY" }]);
    const released = r.push(Buffer.from(`hello ${OTHER.slice(0, 20)}`));
    assert.ok(!released.toString().includes(OTHER.slice(0, 20)));
    assert.throws(() => r.push(Buffer.from(OTHER.slice(20))), (e: unknown) => e instanceof ForbiddenBytesError && e.forbidden === "KEY");
  });

  test("work grows linearly with the input, however many matches and near-matches a guest packs in", () => {
    // Matches of one placeholder among near-misses of another, in one big piece (a websocket
    // frame can be megabytes): the shape that made a scan per match re-search the rest of the
    // input for every other pattern.
    const near = `${PH.slice(0, -1)}0`;
    const unit = Buffer.from(`${PH}${near.slice(0, -1)}x`);
    // Work is counted, not timed (a time ratio flaked at 61x on a loaded machine): the bytes that
    // Buffer#indexOf, the replacer's only search, looks at while one piece is pushed.
    const scanned = (bytes: number): number => {
      const input = Buffer.alloc(bytes);
      for (let at = 0; at < bytes; at += unit.length) unit.copy(input, at);
      const r = new StreamReplacer([{ from: Buffer.from(PH), to: Buffer.from(VALUE) }], [{ bytes: Buffer.from(near), name: "NEAR" }]);
      const indexOf = Buffer.prototype.indexOf;
      let work = 0;
      Buffer.prototype.indexOf = function (this: Buffer, value: string | number | Uint8Array, byteOffset?: number | string, encoding?: BufferEncoding): number {
        const at = indexOf.call(this, value, byteOffset as number, encoding);
        const from = typeof byteOffset === "number" ? byteOffset : 0;
        const length = typeof value === "number" ? 1 : Buffer.byteLength(value as string);
        work += (at >= 0 ? at + length : this.length) - from;
        return at;
      };
      let out: Buffer;
      try {
        out = Buffer.concat([r.push(input), r.flush()]);
      } finally {
        Buffer.prototype.indexOf = indexOf;
      }
      assert.ok(out.length > 0 && out.length < bytes);
      return work;
    };
    const small = scanned(512 * 1024);
    const big = scanned(4 << 20);
    assert.ok(small > 0, "the replacer no longer searches with Buffer#indexOf: count its work another way");
    // Linear work: each pattern scans the input about once (~2x its size, ratio 8); a re-scan per
    // match looks at the rest of the input for every match (ratio ~64, thousands of times the size).
    assert.ok(big <= 3 * (4 << 20), `${big} bytes looked at for 4 MiB`);
    assert.ok(big / small < 10, `4 MiB took ${(big / small).toFixed(1)}x the work of 512 KiB`);
  });
});

/** A client frame: masked, as a browser would send it. */
function clientFrame(fin: boolean, opcode: number, payload: string | Buffer): Buffer {
  const key = randomBytes(4);
  const body = Buffer.from(payload);
  return Buffer.concat([encodeHeader(fin, opcode, body.length, key), unmask(Buffer.from(body), key, 0)]);
}

interface Frame { fin: boolean; opcode: number; masked: boolean; payload: string }

function frames(buf: Buffer): Frame[] {
  const out: Frame[] = [];
  while (buf.length) {
    const h = parseHeader(buf)!;
    const payload = unmask(Buffer.from(buf.subarray(h.size, h.size + h.header.length)), h.header.maskKey, 0);
    out.push({ fin: h.header.fin, opcode: h.header.opcode, masked: !!h.header.maskKey, payload: payload.toString("latin1") });
    buf = buf.subarray(h.size + h.header.length);
  }
  return out;
}

async function rewrite(input: Buffer[], opts: ConstructorParameters<typeof WebSocketFrameRewriter>[0]): Promise<Buffer> {
  const w = new WebSocketFrameRewriter(opts);
  const out: Buffer[] = [];
  w.on("data", (d: Buffer) => out.push(d));
  const done = new Promise<void>((resolve, reject) => { w.on("end", resolve); w.on("error", reject); });
  for (const b of input) w.write(b);
  w.end();
  await done;
  return Buffer.concat(out);
}

/** Joins data frames into messages, checking continuation/FIN structure. */
function messages(fs: Frame[]): Array<{ opcode: number; text: string }> {
  const out: Array<{ opcode: number; text: string }> = [];
  let cur: { opcode: number; text: string } | undefined;
  for (const f of fs) {
    if (f.opcode & 8) continue;
    if (f.opcode === 0) { assert.ok(cur, "continuation without a message"); cur.text += f.payload; } else { assert.equal(cur, undefined); cur = { opcode: f.opcode, text: f.payload }; }
    if (f.fin) { out.push(cur); cur = undefined; }
  }
  assert.equal(cur, undefined, "unfinished message");
  return out;
}

const toServer = { mask: true, replacements: [{ from: Buffer.from(PH), to: Buffer.from(VALUE) }], forbidden: [{ bytes: Buffer.from(OTHER), name: "OTHER" }] };

describe("WebSocketFrameRewriter", () => {
  test("replaces in a single masked frame and rewrites its length (16-bit length down to 7-bit)", async () => {
    const text = `${"x".repeat(100)}${PH}`; // 147 bytes: 16-bit length; after replacement 107: 7-bit
    const out = frames(await rewrite([clientFrame(true, 1, text)], toServer));
    assert.deepEqual(out, [{ fin: true, opcode: 1, masked: true, payload: `${"x".repeat(100)}${VALUE}` }]);
  });

  test("a placeholder split across fragments and TCP reads is replaced, the message keeps its shape", async () => {
    const wire = Buffer.concat([clientFrame(false, 1, `token=${PH.slice(0, 10)}`), clientFrame(false, 0, `${PH.slice(10)} end`), clientFrame(true, 0, "!")]);
    for (const cut of [1, 2, 7, 20, 40, wire.length - 3]) {
      const out = frames(await rewrite([wire.subarray(0, cut), wire.subarray(cut)], toServer));
      assert.ok(out.every((f) => f.masked));
      assert.deepEqual(messages(out), [{ opcode: 1, text: `token=${VALUE} end!` }], `cut at ${cut}`);
    }
  });

  test("control frames between fragments pass, rewritten whole", async () => {
    const wire = Buffer.concat([clientFrame(false, 2, "ab"), clientFrame(true, 9, `p${PH}`), clientFrame(true, 0, "cd"), clientFrame(true, 8, "")]);
    const out = frames(await rewrite([wire], toServer));
    assert.deepEqual(out.filter((f) => f.opcode & 8).map((f) => [f.opcode, f.payload]), [[9, `p${VALUE}`], [8, ""]]);
    assert.deepEqual(messages(out), [{ opcode: 2, text: "abcd" }]);
  });

  test("a large frame streams out in pieces before it has fully arrived", async () => {
    const big = Buffer.alloc(200_000, 0x61);
    const wire = clientFrame(true, 2, big);
    const w = new WebSocketFrameRewriter(toServer);
    const seen: Buffer[] = [];
    w.on("data", (d: Buffer) => seen.push(d));
    w.write(wire.subarray(0, 100_000));
    await new Promise((r) => setImmediate(r));
    assert.ok(seen.length > 0, "something went out before the frame ended");
    w.end(wire.subarray(100_000));
    await new Promise((r) => w.on("end", r));
    assert.equal(messages(frames(Buffer.concat(seen)))[0]!.text.length, big.length);
  });

  test("a forbidden placeholder fails the stream; nothing of it went out", async () => {
    const w = new WebSocketFrameRewriter(toServer);
    const seen: Buffer[] = [];
    w.on("data", (d: Buffer) => seen.push(d));
    const failed = new Promise<unknown>((r) => w.on("error", r));
    w.write(clientFrame(true, 1, `leak ${OTHER}`));
    assert.ok((await failed) instanceof ForbiddenBytesError);
    assert.ok(!frames(Buffer.concat(seen)).some((f) => f.payload.includes(OTHER.slice(0, 16))));
  });

  test("toward the guest: unmasked frames, the value redacted back to the placeholder", async () => {
    const server = Buffer.concat([encodeHeader(true, 1, 14, undefined), Buffer.from(`echo: ${VALUE}.`)]);
    const out = frames(await rewrite([server], { mask: false, replacements: [{ from: Buffer.from(VALUE), to: Buffer.from(PH) }] }));
    assert.deepEqual(out, [{ fin: true, opcode: 1, masked: false, payload: `echo: ${PH}.` }]);
  });

  test("extensions (RSV bits) and broken fragmentation are refused", async () => {
    const compressed = clientFrame(true, 1, "x");
    compressed[0] |= 0x40;
    await assert.rejects(rewrite([compressed], toServer), WebSocketProtocolError);
    await assert.rejects(rewrite([clientFrame(true, 0, "x")], toServer), WebSocketProtocolError);
    await assert.rejects(rewrite([clientFrame(false, 1, "x"), clientFrame(true, 1, "y")], toServer), WebSocketProtocolError);
  });
});

describe("port sniffing", () => {
  const kind = (text: string | Buffer) => sniff(Buffer.isBuffer(text) ? text : Buffer.from(text, "latin1"));

  test("TLS, HTTP, raw, and undecided", () => {
    assert.equal(kind(Buffer.from([0x16, 0x03, 0x01])), "tls");
    assert.equal(kind("GET / HTTP/1.1\r\n"), "http");
    assert.equal(kind("POST /x HTTP/1.1\r\n"), "http");
    assert.equal(kind("PO"), "more");
    assert.equal(kind(""), "more");
    assert.equal(kind("SSH-2.0-OpenSSH_9.2\r\n"), "raw");
    assert.equal(kind("hello echo\n"), "raw");
    assert.equal(kind("GETAWAY and more\n"), "raw");
    assert.equal(kind("PING\r\n"), "raw");
    assert.equal(kind("*2\r\n$3\r\nGET\r\n"), "raw");
    assert.equal(kind("\x00\x01binary"), "raw");
  });

  test("what servers read as a request is HTTP: after empty lines or blanks, any method naming HTTP/, HTTP/0.9", () => {
    assert.equal(kind("\r\n\r\nGET / HTTP/1.1\r\nHost: other.test\r\n\r\n"), "http");
    assert.equal(kind("\n \tGET / HTTP/1.1\r\n"), "http");
    assert.equal(kind("FROBNICATE /x HTTP/1.1\r\n"), "http");
    assert.equal(kind("get / http/1.0\r\n"), "http");
    assert.equal(kind("GET /path\r\n"), "http");
    assert.equal(kind("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), "http");
  });

  test("every prefix of a request, down to one byte at a time, waits; none is raw", () => {
    for (const request of ["\r\n\r\nGET / HTTP/1.1\r\nHost: other.test\r\n\r\n", "FROBNICATE /long/path?q=1 HTTP/1.1\r\n", Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]).toString("latin1")]) {
      const whole = Buffer.from(request, "latin1");
      const verdicts = new Set<string>();
      for (let n = 1; n <= whole.length; n++) verdicts.add(sniff(whole.subarray(0, n)));
      assert.ok(!verdicts.has("raw"), `${JSON.stringify(request)}: ${[...verdicts].join(",")}`);
      assert.notEqual(sniff(whole), "more");
    }
    assert.equal(kind("PING"), "more", "a token may still become a method");
    assert.equal(kind("\r\n\r\n"), "more");
    assert.equal(kind("FROBNICATE /x"), "more", "a first line may still name HTTP/");
  });

  test(`undecided past ${MAX_SNIFF_BYTES} bytes goes to the proxy, not raw`, () => {
    assert.equal(kind("FROBNICATE /" + "a".repeat(MAX_SNIFF_BYTES)), "http");
    assert.equal(kind("\r\n".repeat(MAX_SNIFF_BYTES)), "http");
  });

  test("at the client's half-close: nothing sent is raw, an undecided prefix goes to the proxy", () => {
    assert.equal(sniffAtEnd(Buffer.alloc(0)), "raw");
    assert.equal(sniffAtEnd(Buffer.from("GE")), "http");
    assert.equal(sniffAtEnd(Buffer.from("\r\n")), "http");
    assert.equal(sniffAtEnd(Buffer.from("hello\n")), "raw");
  });

  test("a server's first bytes that start an HTTP response", () => {
    assert.ok(isHttpResponse(Buffer.from("HTTP/1.1 408 Request Timeout\r\n")));
    assert.ok(isHttpResponse(Buffer.from("HT")));
    assert.ok(!isHttpResponse(Buffer.from("220 smtp ready\r\n")));
    assert.ok(!isHttpResponse(Buffer.from("SSH-2.0-x\r\n")));
  });
});

/** Both ends of one loopback TCP connection: [the dialler's, the listener's]. */
async function loopbackPair(): Promise<[Socket, Socket]> {
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const accepted = new Promise<Socket>((resolve) => server.once("connection", resolve));
  const dialled = net.connect({ port: (server.address() as net.AddressInfo).port, host: "127.0.0.1", allowHalfOpen: true });
  const pair: [Socket, Socket] = [dialled, await accepted];
  server.close();
  return pair;
}

describe("who speaks first on a sniffed port", () => {
  const open: Socket[] = [];
  after(() => open.forEach((s) => s.destroy()));
  /** app: the guest program; guest: the engine's end of it; upstream: the engine's connection; server: the real server. */
  async function race(play: (app: Socket, server: Socket) => Promise<void>): Promise<FirstSpeaker> {
    const [app, guest] = await loopbackPair();
    const [upstream, server] = await loopbackPair();
    open.push(app, guest, upstream, server);
    guest.pause();
    guest.on("error", () => guest.destroy()); // as the listener does
    const decided = firstSpeaker(guest, upstream);
    await play(app, server);
    return decided;
  }
  const text = (r: FirstSpeaker) => (r.side === "gone" ? r : { ...r, client: r.client.toString("latin1"), server: r.server.toString("latin1") });

  test("a client that sends its ClientHello late is still sniffed (no time limit)", async () => {
    const r = await race(async (app) => {
      await sleep(1200);
      app.write(Buffer.from([0x16, 0x03, 0x01, 0x00]));
    });
    assert.deepEqual(text(r), { side: "client", kind: "tls", client: "\x16\x03\x01\x00", server: "" });
  });

  test("an HTTP request line arriving in pieces is HTTP", async () => {
    const r = await race(async (app) => {
      app.write("PO");
      await sleep(100);
      app.write("ST / HTTP/1.1\r\n");
    });
    assert.equal(r.side === "client" && r.kind, "http");
  });

  test("a server that speaks first makes it raw, keeping what the client had begun", async () => {
    const r = await race(async (app, server) => {
      app.write("PO"); // undecided
      await sleep(100);
      server.write("220 smtp ready\r\n");
    });
    assert.deepEqual(text(r), { side: "server", client: "PO", server: "220 smtp ready\r\n" });
  });

  test("an upstream that only closes (idle) decides nothing: a late ClientHello still goes to the proxy", async () => {
    const r = await race(async (app, server) => {
      server.end();
      await sleep(300);
      app.write(Buffer.from([0x16, 0x03, 0x01, 0x00]));
    });
    assert.deepEqual(text(r), { side: "client", kind: "tls", client: "\x16\x03\x01\x00", server: "" });
  });

  test("a method sent a byte at a time waits as long as it takes (no timer decides raw)", async () => {
    // A decision is final: had a timer decided while the guest paused, this would be raw.
    const r = await race(async (app) => {
      app.write("\r\nGE");
      await sleep(2500);
      app.write("T / HTTP/1.1\r\nHost: other.test\r\n\r\n");
    });
    assert.deepEqual(text(r), { side: "client", kind: "http", client: "\r\nGET / HTTP/1.1\r\nHost: other.test\r\n\r\n", server: "" });
  });

  test("a client that half-closes undecided goes to the proxy, with nothing sent is raw; one that resets is gone", async () => {
    const ended = await race(async (app) => void app.end("PO"));
    assert.deepEqual(text(ended), { side: "client", kind: "http", client: "PO", server: "" });
    const silent = await race(async (app) => void app.end());
    assert.deepEqual(text(silent), { side: "client", kind: "raw", client: "", server: "" });
    const gone = await race(async (app) => void app.resetAndDestroy());
    assert.deepEqual(gone, { side: "gone" });
  });
});
