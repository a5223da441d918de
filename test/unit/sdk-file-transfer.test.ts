// The SDK's streamed file API against an engine that predates the chunked-transfer extension
// (the fake engine speaks only the spec's methods): it falls back, or fails clearly.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { describe, it } from "node:test";
import { TransferSlots } from "../../src/sdk/file-transfer.js";
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

describe("SDK transfer slots", () => {
  it("run at most `limit` tasks at once, all of them, in order of arrival", T, async () => {
    const slots = new TransferSlots(2);
    let active = 0;
    let peak = 0;
    const started: number[] = [];
    const gates = Array.from({ length: 6 }, () => {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      return { promise, resolve };
    });
    const runs = gates.map((gate, i) => slots.run(async () => {
      started.push(i);
      peak = Math.max(peak, ++active);
      await gate.promise;
      active--;
      if (i === 3) throw new Error("task 3 fails");
      return i;
    }));
    const settled = Promise.allSettled(runs);
    for (const gate of gates) {
      await new Promise((resolve) => setImmediate(resolve));
      gate.resolve();
    }
    const results = await settled;
    assert.equal(peak, 2);
    assert.deepEqual(started, [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(results.map((r) => r.status), ["fulfilled", "fulfilled", "fulfilled", "rejected", "fulfilled", "fulfilled"]);
  });
});
