// The one create pipeline: params are checked, then the driver's capabilities, before anything
// is made; here with a driver and an image store that fail the test if they are reached.
import assert from "node:assert/strict";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { BackendDriver, Capabilities } from "../../src/engine/backends/backend.js";
import type { ImageStore } from "../../src/engine/image/store.js";
import { CreateParamsError, createSandbox, parseCreateParams, type CreateDeps } from "../../src/engine/sandbox/create.js";

function driver(capabilities: Partial<Capabilities>): BackendDriver {
  const never = () => { throw new Error("the driver must not be reached"); };
  return {
    name: "fake", description: "a test driver",
    capabilities: { hostMounts: "files and directories", overlay: true, diskLimit: true, pty: false, network: ["host-link"], image: "unpacked", ...capabilities },
    probe: async () => ({ problem: undefined, rank: 1, detail: "fake" }),
    start: never, reclaim: never,
  };
}

function deps(d: BackendDriver): CreateDeps {
  const images = new Proxy({}, { get: () => () => { throw new Error("the image store must not be reached"); } }) as ImageStore;
  return { images, pull: false, chooseDriver: async () => ({ driver: d, reason: "test" }), log: () => {} };
}

describe("create pipeline", () => {
  test("bad params are invalid_argument errors", () => {
    assert.throws(() => parseCreateParams({}), (e: unknown) => e instanceof CreateParamsError && e.kind === "invalid_argument" && /image is required/.test(e.message));
  });

  test("what the driver cannot do is refused before the image store or the driver is reached", async () => {
    const dir = await mkdtemp(join(tmpdir(), "matchlock-pipeline-"));
    const file = join(dir, "f.txt");
    await writeFile(file, "x");
    const cases: Array<[Partial<Capabilities>, Record<string, unknown>, RegExp]> = [
      [{ hostMounts: "directories" }, { vfs: { mounts: { "/etc/f.txt": { type: "host_fs", host_path: file } } } }, /shares directories only, and .*f\.txt is a file/],
      [{ hostMounts: "none" }, { vfs: { mounts: { "/data": { type: "host_fs", host_path: dir } } } }, /mount \/data: host paths: the fake backend cannot do this/],
      [{ overlay: false }, { vfs: { mounts: { "/data": { type: "overlay", host_path: dir } } } }, /overlay mounts: the fake backend cannot do this/],
      [{ network: [] }, { network: { allowed_hosts: ["example.test"] } }, /a sealed network: the fake backend cannot do this/],
      [{}, { vfs: { mounts: { "/proc/x": { type: "memory" } } } }, /cannot be at or under \/proc/],
    ];
    for (const [caps, params, error] of cases) {
      await assert.rejects(createSandbox(parseCreateParams({ image: "img", ...params }), deps(driver(caps))), (e: unknown) => {
        assert.match((e as Error).message, error);
        return true;
      });
    }
  });
});
