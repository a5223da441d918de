// The SDK's streamed file API against an engine that predates the chunked-transfer extension
// (the fake engine speaks only the spec's methods): it falls back, or fails clearly.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { describe, it } from "node:test";
import { requestsOf, withClient } from "../helpers/sdk-fixture.js";

const T = { timeout: 30_000 };

describe("SDK streamed files on an older engine", () => {
  it("a Buffer over 1 MiB tries write_file_open, then falls back to one write_file", T, () =>
    withClient(async ({ fake, client }) => {
      const data = randomBytes(2 * 1024 * 1024);
      await client.writeFile("/workspace/two-mb", data);
      assert.equal(requestsOf(fake, "write_file_open").length, 1);
      assert.equal(requestsOf(fake, "write_file").length, 1);
      assert.deepEqual(await client.readFile("/workspace/two-mb"), data);
    }));

  it("a stream cannot fall back: the error says what to do", T, () =>
    withClient(async ({ client }) => {
      await assert.rejects(client.writeFile("/workspace/s", Readable.from([Buffer.from("abc")])),
        /does not support streamed writes \(write_file_open: Method not found\)/);
    }));

  it("readFile and readFileStream fall back to read_file", T, () =>
    withClient(async ({ fake, client }) => {
      await client.writeFile("/workspace/f", "hello");
      assert.equal((await client.readFile("/workspace/f")).toString(), "hello");
      const parts: Buffer[] = [];
      for await (const p of client.readFileStream("/workspace/f")) parts.push(p as Buffer);
      assert.equal(Buffer.concat(parts).toString(), "hello");
      assert.equal(requestsOf(fake, "read_file_open").length, 2);
      assert.equal(requestsOf(fake, "read_file").length, 2);
    }));

  it("bad content and paths are refused before anything is sent", T, () =>
    withClient(async ({ client }) => {
      await assert.rejects(client.writeFile("/x", 42 as unknown as string), /must be a string, a Uint8Array\/Buffer, or an AsyncIterable/);
      assert.throws(() => client.readFileStream(""), /path is required/);
    }));
});
