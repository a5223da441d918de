import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LineSplitter } from "../../src/protocol/line-splitter.js";
import { OutputTail } from "../../src/sdk/output-tail.js";

function split(chunks: Buffer[], end = true): string[] {
  const lines: string[] = [];
  const splitter = new LineSplitter((line) => lines.push(line.toString("utf8")));
  for (const chunk of chunks) splitter.push(chunk);
  if (end) splitter.end();
  return lines;
}

describe("LineSplitter", () => {
  it("splits several lines in one chunk, keeping empty lines", () => {
    assert.deepEqual(split([Buffer.from('{"a":1}\n\n{"b":2}\n')]), ['{"a":1}', "", '{"b":2}']);
  });

  it("joins a line delivered one byte at a time, including multi-byte characters", () => {
    const text = '{"msg":"ünïcødé 😀"}\n{"n":2}\n';
    const bytes = Buffer.from(text);
    const chunks = [...bytes].map((b) => Buffer.from([b]));
    assert.deepEqual(split(chunks), ['{"msg":"ünïcødé 😀"}', '{"n":2}']);
  });

  it("holds a partial line until its newline, and emits a last unterminated line on end()", () => {
    assert.deepEqual(split([Buffer.from("abc"), Buffer.from("def")], false), []);
    assert.deepEqual(split([Buffer.from("abc\nde"), Buffer.from("f")]), ["abc", "def"]);
  });

  it("has no line length limit", () => {
    const big = "y".repeat(20 * 1024 * 1024);
    const bytes = Buffer.from(big + "\nz\n");
    const chunks: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += 65536) chunks.push(bytes.subarray(i, i + 65536));
    const lines = split(chunks);
    assert.equal(lines.length, 2);
    assert.equal(lines[0]!.length, big.length);
    assert.equal(lines[1], "z");
  });
});

describe("OutputTail", () => {
  it("keeps only the last `limit` bytes, trimmed", () => {
    const tail = new OutputTail(10);
    for (let i = 0; i < 100; i++) tail.push(Buffer.from(`line ${i}\n`));
    assert.equal(tail.text(), "8\nline 99");
    assert.equal(new OutputTail().text(), "");
  });
});
