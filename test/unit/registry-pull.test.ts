// Pulling from a real registry (Debian's docker-registry on 127.0.0.1) into the image store:
// tags and digests, multi-arch indexes, whiteouts across layers, zstd layers, corrupted blobs,
// layers that contradict their config's diff_ids, unknown tags,
// an unreachable registry, prune, and concurrent and interrupted pulls through the CLI.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile, stat } from "node:fs/promises";
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ImageStore } from "../../src/engine/image/index.js";
import type { PullEvent } from "../../src/engine/image/registry/pull.js";
import { CLI } from "../helpers/e2e.js";
import { tarBytes, type TarEntry } from "../helpers/image-tarballs.js";
import { blob, compressedLayer, image, layer, TestRegistry, type TestImage } from "../helpers/registry.js";

let dir: string;
let registry: TestRegistry;
let store: ImageStore;

const busy = randomBytes(1024 * 1024); // incompressible, so layers have real size
const baseEntries: TarEntry[] = [
  { path: "etc/", type: "Directory" },
  { path: "etc/os-release", body: "NAME=test\n" },
  { path: "a/", type: "Directory" },
  { path: "a/keep", body: "keep" },
  { path: "a/gone", body: "gone" },
  { path: "b/", type: "Directory" },
  { path: "b/old", body: "old" },
];
const topEntries: TarEntry[] = [
  { path: "a/.wh.gone", body: "" },
  { path: "b/", type: "Directory" },
  { path: "b/.wh..wh..opq", body: "" },
  { path: "b/new", body: "new" },
];
const base = layer(baseEntries);
const top = layer(topEntries);
const app: TestImage = image([base, top], { Env: ["APP=1"], WorkingDir: "/a", Cmd: ["sh"] });
const busy2 = randomBytes(3 * 1024 * 1024);
const busy3 = randomBytes(5 * 1024 * 1024);
const big: TestImage = image([base, layer([{ path: "data/one", body: busy }]), layer([{ path: "data/two", body: busy2 }]), layer([{ path: "data/three", body: busy3 }])]);

const ref = (repo: string) => `${registry.host}/${repo}`;

async function cached(root = store.root): Promise<string[]> {
  return (await readdir(join(root, "blobs", "sha256")).catch(() => [] as string[])).map((h) => `sha256:${h}`);
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "matchlock-pull-test-"));
  process.env.MATCHLOCK_HOME = join(dir, "home");
  process.env.DOCKER_CONFIG = join(dir, "docker-config"); // no credentials unless a test writes them
  delete process.env.MATCHLOCK_IMAGES;
  delete process.env.MATCHLOCK_PULL;
  store = new ImageStore(join(dir, "images"));
  registry = await TestRegistry.start();
  await registry.pushImage("test/app", app, "v1");
  await registry.pushImage("test/big", big, "v1");
});
after(async () => {
  await registry?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("pull", () => {
  test("by tag: layers applied with whiteouts and opaque dirs, config kept, blobs cached", async () => {
    const img = await store.pull(ref("test/app:v1"));
    assert.equal(img.ref, `${registry.host}/test/app:v1`);
    assert.equal(img.digest, app.config.digest);
    assert.equal(img.repoDigest, app.manifest.digest);
    assert.equal(img.source, "pull");
    assert.deepEqual(img.config.env, ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "APP=1"]);
    assert.equal(img.config.workingDir, "/a");
    assert.deepEqual(img.config.cmd, ["sh"]);
    assert.equal(await readFile(join(img.rootfs, "a/keep"), "utf8"), "keep");
    assert.equal(existsSync(join(img.rootfs, "a/gone")), false, "whiteout deletes a/gone");
    assert.deepEqual(await readdir(join(img.rootfs, "b")), ["new"], "opaque dir hides b/old");
    assert.equal(existsSync(join(img.rootfs, "a/.wh.gone")), false);
    const blobs = await cached();
    for (const d of [app.manifest.digest, app.config.digest, ...app.layers.map((l) => l.digest)]) assert.ok(blobs.includes(d), `${d} cached`);
    assert.equal((await store.resolve(ref("test/app:v1")))?.digest, img.digest);
  });

  test("pulling again fetches only manifests and config: the image is up to date", async () => {
    const events: PullEvent[] = [];
    const img = await store.pull(ref("test/app:v1"), { onEvent: (e) => events.push(e) });
    assert.equal(img.digest, app.config.digest);
    assert.deepEqual(events.map((e) => e.type), ["resolved", "up-to-date"]);
  });

  test("zstd layers, streamed: whiteouts and opaque dirs across zstd and gzip layers, big files whole", async () => {
    // Several MB of compressible text (many zstd blocks and read chunks) and some random bytes.
    const text = Buffer.from(Array.from({ length: 200_000 }, (_, i) => `line ${i} of a compressible file\n`).join(""));
    const zbase = compressedLayer(tarBytes([...baseEntries, { path: "data/", type: "Directory" }, { path: "data/text", body: text }, { path: "data/noise", body: busy }]), "zstd");
    const ztop = compressedLayer(tarBytes(topEntries), "zstd");
    const gtop = layer([{ path: "data/noise", body: "replaced by a gzip layer" }]);
    const z = image([zbase, ztop, gtop], { Cmd: ["sh"] });
    assert.ok(zbase.bytes.length < text.length / 5, "the zstd layer really is compressed");
    assert.equal(JSON.parse(z.manifest.bytes.toString()).layers[0].mediaType, "application/vnd.oci.image.layer.v1.tar+zstd");
    await registry.pushImage("test/zstd", z, "v1");
    const img = await store.pull(ref("test/zstd:v1"));
    assert.equal(img.digest, z.config.digest);
    assert.deepEqual(await readFile(join(img.rootfs, "data/text")), text);
    assert.equal(await readFile(join(img.rootfs, "data/noise"), "utf8"), "replaced by a gzip layer");
    assert.equal(existsSync(join(img.rootfs, "a/gone")), false, "a zstd whiteout deletes a/gone");
    assert.deepEqual(await readdir(join(img.rootfs, "b")), ["new"], "a zstd opaque dir hides b/old");
  });

  test("a cut-off zstd layer (its blob digest right, its data truncated) is a clear error, nothing stored", async () => {
    const tar = tarBytes([{ path: "big", body: randomBytes(300_000) }]);
    const whole = compressedLayer(tar, "zstd");
    const cut = { ...blob(whole.bytes.subarray(0, whole.bytes.length - 1000)), diffId: whole.diffId!, mediaType: whole.mediaType! };
    await registry.pushImage("test/zstd-cut", image([cut]), "v1");
    await assert.rejects(store.pull(ref("test/zstd-cut:v1")), /cannot unpack the image: .*not a readable zstd file: zstd data is truncated/);
    assert.equal(await store.resolve(ref("test/zstd-cut:v1")), undefined);
    assert.deepEqual(await readdir(join(store.root, "tmp")).catch(() => []), []);
  });

  test("a zstd layer asking for a huge window: refused naming the layer, nothing cached, nothing allocated", async () => {
    // Nine bytes: a frame header asking for a 1.5 GiB window, then an empty last block.
    const hostile = blob(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa4, 0x01, 0x00, 0x00]));
    const bad = image([{ ...hostile, diffId: `sha256:${"0".repeat(64)}`, mediaType: "application/vnd.oci.image.layer.v1.tar+zstd" }]);
    await registry.pushImage("test/zstd-window", bad, "v1");
    const before = process.memoryUsage().arrayBuffers;
    await assert.rejects(store.pull(ref("test/zstd-window:v1")), (err: Error) => {
      assert.match(err.message, new RegExp(`^${registry.host}/test/zstd-window:v1: cannot unpack the image: layer ${hostile.digest} is refused: zstd frame at byte 0 asks for a 1536 MiB window; at most 128 MiB is accepted$`));
      return true;
    });
    assert.ok(process.memoryUsage().arrayBuffers - before < 64 * 1024 * 1024);
    assert.equal(await store.resolve(ref("test/zstd-window:v1")), undefined);
    const blobs = await cached();
    for (const d of [bad.manifest.digest, bad.config.digest, hostile.digest]) assert.ok(!blobs.includes(d), `${d} is not cached`);
    assert.deepEqual(await readdir(join(store.root, "tmp")).catch(() => []), []);
  });

  test("a zstd bomb decoding past MATCHLOCK_MAX_LAYER_BYTES: refused naming the layer, its partial tar removed, nothing cached", async () => {
    // 64 MiB of zeros in a tar: a few KiB of zstd.
    const bomb = compressedLayer(tarBytes([{ path: "zeros", body: Buffer.alloc(64 * 2 ** 20) }]), "zstd");
    const bad = image([bomb]);
    await registry.pushImage("test/zstd-bomb", bad, "v1");
    process.env.MATCHLOCK_MAX_LAYER_BYTES = "8M";
    try {
      await assert.rejects(store.pull(ref("test/zstd-bomb:v1")), (err: Error) => {
        assert.match(err.message, new RegExp(`^${registry.host}/test/zstd-bomb:v1: cannot unpack the image: layer ${bomb.digest} is refused: it decodes to more than 8 MiB: at most 8 MiB is accepted \\(MATCHLOCK_MAX_LAYER_BYTES\\)$`));
        return true;
      });
    } finally {
      delete process.env.MATCHLOCK_MAX_LAYER_BYTES;
    }
    assert.equal(await store.resolve(ref("test/zstd-bomb:v1")), undefined);
    const blobs = await cached();
    for (const d of [bad.manifest.digest, bad.config.digest, bomb.digest]) assert.ok(!blobs.includes(d), `${d} is not cached`);
    assert.deepEqual(await readdir(join(store.root, "tmp")).catch(() => []), []);
    assert.deepEqual((await readdir(store.root)).filter((f) => f.startsWith("decoded-")), []);
  });

  test("a layer whose content differs from the config's diff_ids: clear error, nothing cached, then the fixed image pulls", async () => {
    const good = layer([{ path: "x", body: "good" }]);
    const evil = layer([{ path: "x", body: "evil" }]);
    // The registry serves exactly the blob the manifest names (its digest checks out), but the
    // config says the layer's tar is another one.
    const lying = image([evil], {}, "amd64", undefined, [good.diffId!]);
    await registry.pushImage("test/diffid", lying, "v1");
    await assert.rejects(store.pull(ref("test/diffid:v1")), (err: Error) => {
      assert.match(err.message, new RegExp(`^${registry.host}/test/diffid:v1: cannot unpack the image: layer ${evil.digest} does not match the image config: its uncompressed content has digest ${evil.diffId}, the config's rootfs.diff_ids say ${good.diffId}$`));
      return true;
    });
    assert.equal(await store.resolve(ref("test/diffid:v1")), undefined, "the image is not usable");
    const blobs = await cached();
    for (const d of [lying.manifest.digest, lying.config.digest, evil.digest]) assert.ok(!blobs.includes(d), `${d} is not cached`);
    assert.equal(existsSync(join(store.root, "sha256", lying.config.digest.slice(7))), false);
    assert.deepEqual(await readdir(join(store.root, "tmp")).catch(() => []), []);
    assert.deepEqual(await readdir(join(store.root, "partial")).catch(() => []), []);

    const fixed = image([good]);
    await registry.pushImage("test/diffid", fixed, "v1");
    const img = await store.pull(ref("test/diffid:v1"));
    assert.equal(img.digest, fixed.config.digest);
    assert.equal(await readFile(join(img.rootfs, "x"), "utf8"), "good");
  });

  test("by digest, verified against the manifest; the image is shared with the tag", async () => {
    const img = await store.pull(`${registry.host}/test/app@${app.manifest.digest}`);
    assert.equal(img.digest, app.config.digest);
    assert.equal(img.ref, `${registry.host}/test/app@${app.manifest.digest}`);
    assert.equal(img.rootfs, (await store.resolve(ref("test/app:v1")))?.rootfs);
  });

  test("a multi-arch index gives the linux/amd64 image", async () => {
    const amd = image([layer([{ path: "arch", body: "amd64" }])], {}, "amd64");
    const arm = image([layer([{ path: "arch", body: "arm64" }])], {}, "arm64");
    const idx = await registry.pushIndex("test/multi", "latest", [{ image: arm, arch: "arm64" }, { image: amd, arch: "amd64" }]);
    const img = await store.pull(ref("test/multi"));
    assert.equal(img.digest, amd.config.digest);
    assert.equal(img.repoDigest, idx.digest);
    assert.equal(await readFile(join(img.rootfs, "arch"), "utf8"), "amd64");
    const arm64 = await store.pull(ref("test/multi:latest"), { platform: "linux/arm64" });
    assert.equal(await readFile(join(arm64.rootfs, "arch"), "utf8"), "arm64");
    await assert.rejects(store.pull(ref("test/multi"), { platform: "linux/s390x" }), /no image for linux\/s390x in the image index \(it has: linux\/arm64, linux\/amd64\)/);
  });

  test("a corrupted blob is a clear error and nothing of it is kept", async () => {
    const bad = image([layer([{ path: "x", body: randomBytes(4096) }])]);
    await registry.pushImage("test/corrupt", bad, "v1");
    const data = registry.blobDataPath(bad.layers[0]!.digest);
    await writeFile(data, randomBytes((await stat(data)).size));
    await assert.rejects(store.pull(ref("test/corrupt:v1")), (err: Error) => {
      assert.match(err.message, new RegExp(`blob ${bad.layers[0]!.digest} from ${registry.host} is corrupted: its content has digest sha256:`));
      return true;
    });
    assert.ok(!(await cached()).includes(bad.layers[0]!.digest));
    assert.equal(await store.resolve(ref("test/corrupt:v1")), undefined);
    assert.deepEqual(await readdir(join(store.root, "tmp")).catch(() => []), []);
  });

  test("unknown tags, repositories and registries are clear errors naming the image", async () => {
    await assert.rejects(store.pull(ref("test/app:nope")), new RegExp(`^RegistryError: ${registry.host}/test/app:nope: manifest unknown`));
    await assert.rejects(store.pull(ref("test/none:v1")), /test\/none:v1: (repository|manifest) unknown/);
    await assert.rejects(store.pull(`${registry.host}/test/app@sha256:${"1".repeat(64)}`), /manifest unknown/);
    await assert.rejects(store.pull("127.0.0.1:1/test/app:v1"), /127\.0\.0\.1:1\/test\/app:v1: registry 127\.0\.0\.1:1 is unreachable .*ECONNREFUSED/);
    await assert.rejects(store.pull("Bad/Name"), /invalid image reference/);
  });

  test("prune removes unused blobs and images, keeps those in use", async () => {
    await store.pull(ref("test/big:v1"));
    assert.ok(await store.remove(ref("test/big:v1")));
    const r = await store.prune();
    assert.equal(r.images, 0, "remove already dropped the unpacked image");
    assert.ok(r.blobs >= 4, `removed ${r.blobs} blobs`);
    const left = await cached();
    for (const l of big.layers.slice(1)) assert.ok(!left.includes(l.digest));
    assert.ok(left.includes(base.digest), "the shared base layer is still used by test/app");
    assert.ok(existsSync((await store.resolve(ref("test/app:v1")))!.rootfs));
  });
});

/** Runs the CLI against this store. */
function cli(args: string[], env: Record<string, string> = {}): { done: Promise<{ code: number | null; stdout: string; stderr: string }>; pid: number; kill: () => void } {
  const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, MATCHLOCK_IMAGES: store.root, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  p.stdout.on("data", (d) => (stdout += d));
  p.stderr.on("data", (d) => (stderr += d));
  return { done: new Promise((r) => p.on("close", (code) => r({ code, stdout, stderr }))), pid: p.pid!, kill: () => p.kill("SIGKILL") };
}

/** A loopback proxy in front of the registry that trickles blob bodies, so a pull can be caught midway. */
async function slowProxy(target: string, ranges: string[]): Promise<Server> {
  const [host, port] = target.split(":");
  const server = createServer((req, res) => {
    if (req.headers.range) ranges.push(req.headers.range);
    const up = httpRequest({ host, port: Number(port), path: req.url, method: req.method, headers: { ...req.headers, host: target } }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      if (!req.url?.includes("/blobs/")) return void upRes.pipe(res);
      upRes.on("data", (chunk: Buffer) => {
        upRes.pause();
        res.write(chunk);
        setTimeout(() => upRes.resume(), 20);
      });
      upRes.on("end", () => res.end());
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return server;
}

describe("pull through the CLI", () => {
  test("plain output names the layers and prints the digest; --json and image ls/prune --json", async () => {
    await store.remove(ref("test/app:v1"));
    await store.remove(`${registry.host}/test/app@${app.manifest.digest}`);
    const r = await cli(["pull", ref("test/app:v1")]).done;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Unpacking/);
    assert.match(r.stdout, /Resolved: sha256:[a-f0-9]{64} \(2 layers/);
    assert.match(r.stdout, new RegExp(`${base.digest.slice(7, 19)}: (Already exists|Downloaded)`));
    assert.match(r.stdout, new RegExp(`^Digest: ${app.manifest.digest}$`, "m"));
    assert.doesNotMatch(r.stdout, /\r|\x1b\[/, "no redrawn bar when stdout is not a terminal");
    const again = await cli(["pull", ref("test/app:v1")]).done;
    assert.match(again.stdout, /^Image is up to date/m);
    assert.doesNotMatch(again.stdout, /Unpacking/);
    const j = await cli(["pull", "--json", ref("test/app:v1")]).done;
    assert.deepEqual({ ...JSON.parse(j.stdout), size: 0 }, { ref: `${registry.host}/test/app:v1`, digest: app.manifest.digest, id: app.config.digest, size: 0 });
    const ls = JSON.parse((await cli(["image", "ls", "--json"]).done).stdout) as Array<{ ref: string; repo_digest: string }>;
    assert.equal(ls.find((i) => i.ref === `${registry.host}/test/app:v1`)?.repo_digest, app.manifest.digest);
    const prune = JSON.parse((await cli(["image", "prune", "--json"]).done).stdout) as Record<string, number>;
    assert.deepEqual(Object.keys(prune).sort(), ["blob_bytes_freed", "blobs_removed", "images_removed", "partial_downloads_removed"]);
    const bad = await cli(["pull", ref("test/app:nope")]).done;
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^Error: .*test\/app:nope: manifest unknown/);
  });

  test("image import, ls and rm with --json; removing an unknown image fails", async () => {
    const tar = join(dir, "rootfs.tar");
    await writeFile(tar, tarBytes([{ path: "hello", body: "from a tarball" }]));
    const imported = JSON.parse((await cli(["image", "import", "--json", "local/tarball:1", tar]).done).stdout) as { ref: string; digest: string };
    assert.equal(imported.ref, "docker.io/local/tarball:1");
    assert.match(imported.digest, /^sha256:[a-f0-9]{64}$/);
    const ls = JSON.parse((await cli(["image", "ls", "--json"]).done).stdout) as Array<{ ref: string; source: string }>;
    assert.equal(ls.find((i) => i.ref === imported.ref)?.source, "import:rootfs");
    const rm = await cli(["image", "rm", "--json", "local/tarball:1"]).done;
    assert.deepEqual(JSON.parse(rm.stdout), { removed: "local/tarball:1" });
    assert.equal(await store.resolve("local/tarball:1"), undefined);
    const again = await cli(["image", "rm", "local/tarball:1"]).done;
    assert.equal(again.code, 1);
    assert.match(again.stderr, /image local\/tarball:1 not found/);
  });

  test("on a terminal: one progress bar redrawn in place (bytes and layers), no per-layer lines", async () => {
    // util-linux's script(1) (Debian's essential bsdutils) gives the CLI a pseudo-terminal.
    const images = join(dir, "images-tty");
    const shq = (a: string) => `'${a.replace(/'/g, "'\\''")}'`;
    const command = [process.execPath, CLI, "pull", ref("test/big:v1")].map(shq).join(" ");
    const p = spawn("script", ["-q", "-e", "-c", command, "/dev/null"], { env: { ...process.env, MATCHLOCK_IMAGES: images, TERM: "xterm" }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    const code = await new Promise((r) => p.on("close", r));
    assert.equal(code, 0, out);
    const bars = out.match(/\r\[[=> ]{30}\] [\d.]+ (?:bytes|MiB) \/ [\d.]+ (?:bytes|MiB) {2}\d\/4 layers\x1b\[K/g) ?? [];
    assert.ok(bars.length >= 4, `a bar per finished layer at least (saw ${JSON.stringify(out)})`);
    assert.match(bars.at(-1)!, /\[=+>\] .* 4\/4 layers/, "the last bar is full");
    assert.doesNotMatch(out, /Resolved:|Downloaded/, "no plain lines on a terminal");
    assert.match(out, /Unpacking\.\.\./);
    assert.match(out, new RegExp(`Digest: ${big.manifest.digest}`));
  });

  test("a pull killed half way resumes: finished blobs kept, cut-off ones continued; the result is whole", async () => {
    await store.remove(ref("test/big:v1"));
    await store.prune();
    const ranges: string[] = [];
    const proxy = await slowProxy(registry.host, ranges);
    const via = `127.0.0.1:${(proxy.address() as AddressInfo).port}/test/big:v1`;
    try {
      const first = cli(["pull", via]);
      // Layers of 1, 3 and 5 MB trickle in side by side: once the first is cached, kill the pull
      // without warning, with the other two cut off midway.
      const deadline = Date.now() + 180_000; // a loaded 2-core machine once took over 30 s
      while (!(await cached()).some((d) => big.layers.slice(1).some((l) => l.digest === d))) {
        assert.ok(Date.now() < deadline, "no layer finished in time");
        await new Promise((r) => setTimeout(r, 20));
      }
      first.kill();
      const killed = await first.done;
      assert.equal(killed.code, null, "killed before it finished");
      assert.equal(await store.resolve(via), undefined, "no half image is visible");
      const haveBefore = await cached();
      assert.ok(big.layers.some((l) => !haveBefore.includes(l.digest)), "some layer was still missing");
      const partials = await readdir(join(store.root, "partial"));
      assert.ok(partials.length > 0, "a cut-off download is kept");

      const second = await cli(["pull", via]).done;
      assert.equal(second.code, 0, second.stderr);
      assert.match(second.stdout, /Already exists/);
      assert.ok(ranges.some((r) => /^bytes=[1-9]\d*-$/.test(r)), `a cut-off blob continued with a Range request (saw ${JSON.stringify(ranges)})`);
      assert.deepEqual(await readdir(join(store.root, "partial")), [], "the resumed download was completed");
      const img = await store.resolve(via);
      assert.equal(img?.digest, big.config.digest);
      assert.deepEqual(await readFile(join(img!.rootfs, "data/one")), busy);
      assert.deepEqual(await readFile(join(img!.rootfs, "data/two")), busy2);
      assert.deepEqual(await readFile(join(img!.rootfs, "data/three")), busy3);
      assert.equal((await readdir(join(store.root, "tmp"))).length, 0, "the killed pull's temp files are swept");
    } finally {
      await new Promise((r) => proxy.close(r));
    }
  });

  test("two processes pulling one image at once both succeed with one copy", async () => {
    const name = ref("test/big:v1");
    await store.remove(name);
    await store.prune();
    const [a, b] = await Promise.all([cli(["pull", name]).done, cli(["pull", name]).done]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const img = await store.resolve(name);
    assert.equal(img?.digest, big.config.digest);
    assert.deepEqual(await readFile(join(img!.rootfs, "data/one")), busy);
    const contents = await readdir(join(store.root, "sha256"));
    assert.equal(contents.filter((h) => `sha256:${h}` === big.config.digest).length, 1);
    assert.equal((await readdir(join(store.root, "tmp"))).length, 0);
  });
});
