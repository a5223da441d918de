// The fast base64 path of the JSON-RPC wire: strict decoding by length, and lines with
// Base64Data spliced in that are byte-for-byte what JSON.stringify would produce.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { Base64Data, Base64Text, decodeStrictBase64, encodeJsonLine, lineText } from "../../src/protocol/base64.js";

describe("strict base64", () => {
  test("valid standard base64 decodes, with or without padding bytes", () => {
    for (const n of [0, 1, 2, 3, 4, 5, 1000, 65537]) {
      const data = randomBytes(n);
      assert.deepEqual(decodeStrictBase64(data.toString("base64")), data);
    }
  });

  test("everything Go's strict decoder refuses is refused", () => {
    for (const bad of ["QUJ", "QU JD", "QU-D", "QU_D", "QQ==QUJD", "QUJDR===", "Q===", "====", "QUJD\n", "QUJ*", "ü123"]) {
      assert.equal(decodeStrictBase64(bad), undefined, JSON.stringify(bad));
      assert.equal(new Base64Text(Buffer.from(bad)).decode(), undefined, `as bytes: ${JSON.stringify(bad)}`);
    }
  });

  test("base64 text as bytes decodes piece by piece to the same bytes, and a bad character in any piece is caught", () => {
    for (const n of [0, 1, 2, 3, 4, 5, 1000, 24 * 1024, 24 * 1024 + 1, 65537, 1024 * 1024 + 2]) {
      const data = randomBytes(n);
      assert.deepEqual(new Base64Text(Buffer.from(data.toString("base64"))).decode(), data, `${n} bytes`);
    }
    const text = Buffer.from(randomBytes(200_000).toString("base64"));
    for (const at of [5, 32 * 1024 + 7, text.length - 10]) {
      for (const bad of ["*", "=", "-", " "]) {
        const broken = Buffer.from(text);
        broken[at] = bad.charCodeAt(0);
        assert.equal(new Base64Text(broken).decode(), undefined, `${JSON.stringify(bad)} at ${at}`);
      }
    }
  });
});

describe("JSON lines with Base64Data", () => {
  test("are the same bytes as JSON.stringify of the base64 text", () => {
    const a = randomBytes(170_001); // several pieces of base64 text
    const b = randomBytes(3);
    const message = { jsonrpc: "2.0", method: "x", params: { path: "/tmp/ü \"q\"\n", data: new Base64Data(a), more: [new Base64Data(b)], n: 1 }, id: 9 };
    const line = encodeJsonLine(message);
    assert.ok(Buffer.isBuffer(line));
    const expected = JSON.stringify({ ...message, params: { ...message.params, data: a.toString("base64"), more: [b.toString("base64")] } }) + "\n";
    assert.equal(line.toString("utf8"), expected);
    assert.equal(lineText(line.subarray(0, -1)), expected.slice(0, -1));
  });

  test("without Base64Data they are plain strings, and a look-alike string stays a string", () => {
    const line = encodeJsonLine({ a: "\u0000matchlock-base64\u0000", b: 1 });
    assert.equal(line, JSON.stringify({ a: "\u0000matchlock-base64\u0000", b: 1 }) + "\n");
    const mixed = encodeJsonLine({ a: "\u0000matchlock-base64\u0000", d: new Base64Data(Buffer.from("hi")) });
    assert.equal(mixed.toString(), JSON.stringify({ a: "\u0000matchlock-base64\u0000", d: "aGk=" }) + "\n");
  });
});
