// End to end: `new Sandbox("<registry>/name:tag")` through the SDK pulls the image from a real
// registry on 127.0.0.1 on first use (gzip or zstd layers), boots a sandbox from it with its env, and next
// time starts from the store without the registry; an unknown tag is a -32000 error naming it.
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir, homedir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import { RPCError, Sandbox } from "../../src/sdk/index.js";
import { eventually, newClient, setUpE2E } from "../helpers/e2e.js";
import { tarBytes } from "../helpers/image-tarballs.js";
import { blob, compressedLayer, image, layer, TestRegistry } from "../helpers/registry.js";

const TARBALLS = process.env.MATCHLOCK_TEST_IMAGES || join(homedir(), ".cache", "matchlock", "test-images");

describe("sandboxes from registry images", () => {
  let registry: TestRegistry;
  let images: string;
  let name: string;
  let home: string;

  before(async () => {
    home = await setUpE2E();
    // A private, empty store, so the image really is pulled; pulling is on for this file (the
    // registry is on loopback, the only network the tests may use).
    images = await mkdtemp(join(tmpdir(), "matchlock-e2e-pulled-"));
    process.env.MATCHLOCK_IMAGES = images;
    delete process.env.MATCHLOCK_PULL;
    process.env.DOCKER_CONFIG = join(images, "no-docker-config");
    registry = await TestRegistry.start();
    const busybox = blob(gzipSync(await readFile(join(TARBALLS, "busybox.tar"))));
    const app = layer([
      { path: "app/", type: "Directory" },
      { path: "app/msg", body: "hello from the registry\n" },
    ]);
    await registry.pushImage("e2e/busybox", image([busybox, app], { Env: ["GREETING=hi"], WorkingDir: "/app" }), "1");
    name = `${registry.host}/e2e/busybox:1`;
    // The same, with zstd-compressed layers (what recent BuildKit and podman can push).
    const zBusybox = compressedLayer(await readFile(join(TARBALLS, "busybox.tar")), "zstd");
    const zApp = compressedLayer(tarBytes([{ path: "app/", type: "Directory" }, { path: "app/msg", body: "hello from zstd\n" }]), "zstd");
    await registry.pushImage("e2e/busybox-zstd", image([zBusybox, zApp], { WorkingDir: "/app" }), "1");
    // Images whose ENTRYPOINT + CMD a launch starts: a service that runs on, and one that fails.
    await registry.pushImage("e2e/service", image([busybox], { Entrypoint: ["/bin/sh", "-c"], Cmd: ["echo up > /tmp/started; echo to-the-log; exec sleep 100000"] }), "1");
    await registry.pushImage("e2e/broken", image([busybox], { Cmd: ["sh", "-c", "echo boom >&2; exit 3"] }), "1");
  });
  after(async () => {
    await registry?.stop();
    await rm(images, { recursive: true, force: true });
  });

  test("first use pulls; the sandbox runs the image's layers with its env", async () => {
    await using client = newClient();
    await client.launch(new Sandbox(name));
    const r = await client.exec("cat /app/msg; echo $GREETING; busybox true && echo busybox-ok");
    assert.equal(r.stdout, "hello from the registry\nhi\nbusybox-ok\n");
    assert.equal(r.exitCode, 0);
  });

  test("commands start in the image's WORKDIR, as its USER; env and image config replace what they name", async () => {
    await using client = newClient();
    await client.launch(new Sandbox(name).withEnv("EXTRA", "x"));
    assert.equal((await client.exec("pwd; echo $GREETING $EXTRA")).stdout, "/app\nhi x\n");
    await using other = newClient();
    await other.launch(new Sandbox(name).withUser("nobody").withImageConfig({ workingDir: "/made/here", env: { ONLY: "this" } }));
    const r = await other.exec("pwd; id -u; echo \"$GREETING|$ONLY|$HOME\"");
    assert.equal(r.stdout, "/made/here\n65534\n|this|/nonexistent\n");
  });

  test("an image of zstd layers pulls and runs", async () => {
    await using client = newClient();
    await client.launch(new Sandbox(`${registry.host}/e2e/busybox-zstd:1`));
    const r = await client.exec("cat /app/msg; busybox true && echo busybox-ok");
    assert.equal(r.stdout, "hello from zstd\nbusybox-ok\n");
    assert.equal(r.exitCode, 0);
  });

  test("an unknown tag is a VM error naming the image", async () => {
    await using client = newClient();
    await assert.rejects(client.launch(new Sandbox(`${registry.host}/e2e/busybox:nope`)), (err: unknown) => {
      assert.ok(err instanceof RPCError);
      assert.equal(err.code, -32000);
      assert.match(err.message, /failed to pull image .*e2e\/busybox:nope: .*manifest unknown/);
      return true;
    });
  });

  test("launch starts the image's ENTRYPOINT + CMD detached, its output in the log; create does not", async () => {
    await using client = newClient();
    const id = await client.launch(new Sandbox(`${registry.host}/e2e/service:1`));
    const r = await client.exec("while [ ! -f /tmp/started ]; do sleep 0.1; done; cat /tmp/started");
    assert.equal(r.stdout, "up\n");
    // The output reaches the log through the agent and the engine: wait for it, not for a time.
    const inLog = async () => ((await readFile(join(home, "vms", id, "logs", "vm.log"), "utf8")).includes("to-the-log") ? [] : ["not in vm.log yet"]);
    assert.deepEqual(await eventually(inLog), []);
    await using plain = newClient();
    await plain.create({ image: `${registry.host}/e2e/service:1` });
    assert.equal((await plain.exec("ls /tmp/started")).exitCode, 1);
  });

  test("an entrypoint that fails at once fails the launch, quoting its output, and leaves nothing", async () => {
    // The protocol watches for 500 ms; a loaded host may not even start the command by then.
    process.env.MATCHLOCK_ENTRYPOINT_GRACE_MS = "120000";
    const records = () => readdir(join(home, "vms")).catch(() => []);
    const before = await records();
    try {
      await using client = newClient();
      await assert.rejects(client.launch(new Sandbox(`${registry.host}/e2e/broken:1`)), (err: unknown) => {
        assert.ok(err instanceof RPCError);
        assert.equal(err.code, -32000);
        assert.match(err.message, /start image entrypoint: exit code 3; its output ended with: boom/);
        return true;
      });
      assert.deepEqual(await records(), before);
    } finally {
      delete process.env.MATCHLOCK_ENTRYPOINT_GRACE_MS;
    }
  });

  test("next time the image comes from the store: the registry is not needed", async () => {
    await registry.stop();
    await using client = newClient();
    await client.launch(new Sandbox(name));
    assert.equal((await client.exec("cat /app/msg")).stdout, "hello from the registry\n");
  });
});
