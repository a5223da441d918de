// Unit tests of the local image store: reference names, the three tarball kinds, layers with
// whiteouts, digest verification, path-escape attempts, and refs sharing content.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ImageStore, normalizeRef } from "../../src/engine/image/index.js";
import { dockerSave, gzip, ociLayout, sha256, snapshot, tarBytes, type TarEntry } from "../helpers/image-tarballs.js";

const asRoot = process.getuid?.() === 0;
/** Ownership lines only hold when the tests run as root (otherwise nothing is chowned). */
const own = (uidgid: string) => (asRoot ? uidgid : `${process.getuid?.()}:${process.getgid?.()}`);

let dir: string;
let store: ImageStore;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "matchlock-image-test-"));
  process.env.MATCHLOCK_HOME = join(dir, "home");
  delete process.env.MATCHLOCK_IMAGES;
  store = new ImageStore();
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, bytes: Buffer): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, bytes);
  return p;
}

/** The store holds exactly these refs, and no content or temp dirs beyond what they use. */
async function assertStoreHolds(refs: string[]): Promise<void> {
  const images = await store.list();
  assert.deepEqual(images.map((i) => i.ref), [...refs].sort());
  const digests = new Set(images.map((i) => i.digest.slice("sha256:".length)));
  assert.deepEqual((await readdir(join(store.root, "sha256")).catch(() => [])).sort(), [...digests].sort());
  assert.deepEqual(await readdir(join(store.root, "tmp")).catch(() => []), []);
}

describe("normalizeRef", () => {
  const cases: Array<[string, string]> = [
    ["alpine", "docker.io/library/alpine:latest"],
    ["python:3.12-alpine", "docker.io/library/python:3.12-alpine"],
    ["library/alpine:3", "docker.io/library/alpine:3"],
    ["docker.io/alpine", "docker.io/library/alpine:latest"],
    ["index.docker.io/library/alpine:3.20", "docker.io/library/alpine:3.20"],
    ["local/busybox", "docker.io/local/busybox:latest"],
    ["ghcr.io/x/y:t", "ghcr.io/x/y:t"],
    ["localhost:5000/a/b", "localhost:5000/a/b:latest"],
    ["localhost/a", "localhost/a:latest"],
    [`name@sha256:${"a".repeat(64)}`, `docker.io/library/name@sha256:${"a".repeat(64)}`],
    [`ghcr.io/o/r:v1@sha256:${"0".repeat(64)}`, `ghcr.io/o/r:v1@sha256:${"0".repeat(64)}`],
    ["my_org/my-app__x.y:V1.0_rc-2", "docker.io/my_org/my-app__x.y:V1.0_rc-2"],
  ];
  for (const [input, want] of cases) {
    test(`${input} -> ${want}`, () => assert.equal(normalizeRef(input), want));
  }
  const bad: Array<[string, RegExp]> = [
    ["", /empty/],
    ["Alpine", /lowercase/],
    ["ghcr.io/Org/app", /lowercase/],
    ["alpine latest", /whitespace/],
    [" alpine", /whitespace/],
    ["alpine@sha256:abc", /bad digest/],
    [`alpine@md5:${"a".repeat(32)}`, /bad digest/],
    ["alpine:", /bad tag/],
    ["alpine:-x", /bad tag/],
    [":latest", /empty/],
    ["a//b", /bad repository name/],
    ["-a/b", /bad repository name/],
    ["a/b/", /bad repository name/],
  ];
  for (const [input, why] of bad) {
    test(`rejects ${JSON.stringify(input)}`, () => {
      assert.throws(() => normalizeRef(input), (e: Error) => e.message.startsWith("invalid image reference") && why.test(e.message));
    });
  }
});

describe("plain rootfs tarballs", () => {
  const entries: TarEntry[] = [
    { path: "./", type: "Directory", mode: 0o755 },
    { path: "./bin/", type: "Directory" },
    { path: "./bin/busybox", body: "#!busybox", mode: 0o755 },
    { path: "./bin/sh", type: "SymbolicLink", linkpath: "/bin/busybox" },
    { path: "./bin/ls", type: "Link", linkpath: "./bin/busybox" },
    { path: "./bin/su", body: "setuid", mode: 0o4755 },
    { path: "./tmp/", type: "Directory", mode: 0o1777 },
    { path: "./home/user/", type: "Directory", mode: 0o700, uid: 1000, gid: 1000 },
    { path: "./home/user/.profile", body: "export X=1\n", mode: 0o600, uid: 1000, gid: 1000 },
    { path: "./etc/passwd", body: "root:x:0:0::/root:/bin/sh\n" }, // its parent is implicit
    { path: "./usr/lib/rel", type: "SymbolicLink", linkpath: "../../bin/busybox" },
    { path: "/abs.txt", body: "absolute paths are taken as root-relative" },
  ];
  const expected = [
    "./ d 0755 " + own("0:0"),
    "abs.txt f 0644 " + own("0:0") + ' "absolute paths are taken as root-relative"',
    "bin/ d 0755 " + own("0:0"),
    "bin/busybox f 0755 " + own("0:0") + ' "#!busybox" (2 links)',
    "bin/ls f 0755 " + own("0:0") + ' "#!busybox" (2 links)',
    "bin/sh l " + own("0:0") + " -> /bin/busybox",
    "bin/su f 4755 " + own("0:0") + ' "setuid"',
    "etc/ d 0755 " + own("0:0"),
    "etc/passwd f 0644 " + own("0:0") + ' "root:x:0:0::/root:/bin/sh\\n"',
    "home/ d 0755 " + own("0:0"),
    "home/user/ d 0700 " + own("1000:1000"),
    "home/user/.profile f 0600 " + own("1000:1000") + ' "export X=1\\n"',
    "tmp/ d 1777 " + own("0:0"),
    "usr/ d 0755 " + own("0:0"),
    "usr/lib/ d 0755 " + own("0:0"),
    "usr/lib/rel l " + own("0:0") + " -> ../../bin/busybox",
  ];

  test("unpacks exactly, keeping modes, owners, symlink targets and hard links; default config", async () => {
    const tar = tarBytes(entries);
    const img = await store.import("local/rootfs", await file("rootfs.tar", tar));
    assert.equal(img.ref, "docker.io/local/rootfs:latest");
    assert.equal(img.digest, sha256(tar));
    assert.equal(img.source, "import:rootfs");
    assert.deepEqual(img.config, { env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], workingDir: "", user: "", entrypoint: [], cmd: [] });
    assert.equal(img.sizeBytes, "#!busybox".length + "setuid".length + "export X=1\n".length + 26 + 41);
    assert.ok(!Number.isNaN(Date.parse(img.created)));
    assert.deepEqual(await snapshot(img.rootfs), expected);
    assert.deepEqual(await store.resolve("local/rootfs:latest"), img);
    assert.deepEqual(await store.resolve(img.digest), img);
  });

  test("a gzip'd rootfs tarball unpacks the same", async () => {
    const img = await store.import("local/rootfs-gz:1", await file("rootfs.tar.gz", gzip(tarBytes(entries))));
    assert.deepEqual(await snapshot(img.rootfs), expected);
    assert.equal(await store.remove("local/rootfs-gz:1"), true);
  });

  test("a second ref for the same content shares it; remove drops content only with its last ref", async () => {
    const a = await store.resolve("local/rootfs");
    const b = await store.import("other/name:v2", await file("rootfs-again.tar", tarBytes(entries)));
    assert.equal(b.rootfs, a!.rootfs);
    await assertStoreHolds(["docker.io/local/rootfs:latest", "docker.io/other/name:v2"]);
    assert.equal(await store.remove("local/rootfs"), true);
    assert.equal(await store.remove("local/rootfs"), false);
    assert.equal(await store.resolve("local/rootfs"), undefined);
    assert.ok(existsSync(b.rootfs), "content still used by other/name:v2");
    assert.equal(await store.remove("other/name:v2"), true);
    assert.ok(!existsSync(b.rootfs));
    await assertStoreHolds([]);
  });

  test("a file bigger than a read chunk is written whole; concurrent imports of one content share it", async () => {
    const big = randomBytes(300_000);
    const tarPath = await file("big.tar", tarBytes([{ path: "big.bin", body: big }]));
    const [a, b, c] = await Promise.all(["local/big:a", "local/big:b", "local/big:c"].map((r) => store.import(r, tarPath)));
    assert.ok((await readFile(join(a!.rootfs, "big.bin"))).equals(big));
    assert.equal(a!.sizeBytes, big.length);
    assert.ok(a!.rootfs === b!.rootfs && b!.rootfs === c!.rootfs);
    await assertStoreHolds(["docker.io/local/big:a", "docker.io/local/big:b", "docker.io/local/big:c"]);
    for (const r of ["local/big:a", "local/big:b", "local/big:c"]) assert.equal(await store.remove(r), true);
    await assertStoreHolds([]);
  });

  test("a truncated tarball is refused, gzip'd or not", async () => {
    const whole = tarBytes([{ path: "a", body: "x".repeat(5000) }, { path: "b", body: "y" }]);
    await assert.rejects(store.import("local/cut", await file("cut.tar", whole.subarray(0, 512 * 12 + 100))), /truncated/);
    await assert.rejects(store.import("local/cut", await file("cut.tar.gz", gzip(whole).subarray(0, 80))), /unexpected end of file/);
    await assertStoreHolds([]);
  });

  test("re-importing a ref with new content drops the old content", async () => {
    const v1 = await store.import("local/moving", await file("v1.tar", tarBytes([{ path: "v", body: "1" }])));
    const v2 = await store.import("local/moving", await file("v2.tar", tarBytes([{ path: "v", body: "2" }])));
    assert.notEqual(v1.digest, v2.digest);
    assert.ok(!existsSync(v1.rootfs));
    await assertStoreHolds(["docker.io/local/moving:latest"]);
    await store.remove("local/moving");
  });
});

describe("docker save archives", () => {
  const layer1 = tarBytes([
    { path: "etc/", type: "Directory" },
    { path: "etc/gone", body: "deleted by layer 2" },
    { path: "etc/kept", body: "kept" },
    { path: "opt/", type: "Directory" },
    { path: "opt/app/", type: "Directory" },
    { path: "opt/app/old1", body: "hidden by opaque" },
    { path: "opt/app/sub/", type: "Directory" },
    { path: "opt/app/sub/old2", body: "hidden by opaque" },
    { path: "var/", type: "Directory" },
    { path: "var/cache/", type: "Directory" },
    { path: "var/cache/big", body: "whole dir deleted" },
    { path: "bin", type: "SymbolicLink", linkpath: "usr/bin" },
  ]);
  const layer2 = tarBytes([
    { path: "etc/", type: "Directory" },
    { path: "etc/.wh.gone", body: "" },
    { path: "etc/new", body: "from layer 2" },
    { path: "opt/app/", type: "Directory", mode: 0o750 },
    // The opaque marker comes after an entry of its own layer, which it must not hide.
    { path: "opt/app/fresh", body: "layer 2 content survives its own opaque marker" },
    { path: "opt/app/.wh..wh..opq", body: "" },
    { path: "var/.wh.cache", body: "" },
    { path: "bin", type: "SymbolicLink", linkpath: "/usr/local/bin" },
  ]);
  const config = { Env: ["PATH=/app/bin:/usr/bin", "LANG=C.UTF-8"], WorkingDir: "/opt/app", User: "1000:1000", Entrypoint: ["/bin/sh", "-c"], Cmd: ["echo hi"] };

  test("applies 2 layers with a whiteout, a whited-out dir and an opaque dir; keeps the config", async () => {
    const { tar, configDigest } = dockerSave({ layers: [layer1, layer2], config });
    const img = await store.import("local/layered:1", await file("docker.tar", tar));
    assert.equal(img.digest, configDigest);
    assert.equal(img.source, "import:docker-archive");
    assert.equal(img.created, "2024-05-06T07:08:09.123Z");
    assert.deepEqual(img.config, { env: config.Env, workingDir: "/opt/app", user: "1000:1000", entrypoint: ["/bin/sh", "-c"], cmd: ["echo hi"] });
    assert.deepEqual(await snapshot(img.rootfs), [
      "./ d 0755 " + own("0:0"),
      "bin l " + own("0:0") + " -> /usr/local/bin",
      "etc/ d 0755 " + own("0:0"),
      "etc/kept f 0644 " + own("0:0") + ' "kept"',
      "etc/new f 0644 " + own("0:0") + ' "from layer 2"',
      "opt/ d 0755 " + own("0:0"),
      "opt/app/ d 0750 " + own("0:0"),
      "opt/app/fresh f 0644 " + own("0:0") + ' "layer 2 content survives its own opaque marker"',
      "var/ d 0755 " + own("0:0"),
    ]);
  });

  test("a gzip'd archive gets the same content digest, so it shares the rootfs", async () => {
    const { tar } = dockerSave({ layers: [layer1, layer2], config });
    const a = await store.resolve("local/layered:1");
    const b = await store.import("local/layered:gz", await file("docker.tar.gz", gzip(tar)));
    assert.equal(b.digest, a!.digest);
    assert.equal(b.rootfs, a!.rootfs);
  });

  test("a corrupted layer is refused and nothing is stored", async () => {
    const before = (await store.list()).map((i) => i.ref);
    const { tar } = dockerSave({ layers: [layer1, layer2], config }, { corruptLayer: 1 });
    await assert.rejects(store.import("local/corrupt", await file("docker-bad.tar", tar)), /layer layer1\/layer\.tar is corrupted: .*expected sha256:/);
    await assertStoreHolds(before);
  });
});

describe("OCI image layouts", () => {
  const spec = (arch: string) => ({
    layers: [
      tarBytes([{ path: "etc/", type: "Directory" }, { path: "etc/arch", body: arch }, { path: "etc/drop", body: "x" }]),
      tarBytes([{ path: "etc/.wh.drop" }, { path: "etc/layer2", body: `${arch} 2` }]),
    ],
    config: { Env: [`ARCH=${arch}`], Cmd: ["/bin/true"] },
  });
  const layout = ociLayout({ arm64: spec("arm64"), amd64: spec("amd64") });

  test("picks the host's linux/amd64 image out of a two-platform index", async (t) => {
    if (process.arch !== "x64") return t.skip("the host platform here is not linux/amd64");
    const img = await store.import("ghcr.io/test/multi:1", await file("oci.tar", layout.tar));
    assert.equal(img.digest, layout.configDigests.amd64);
    assert.equal(img.source, "import:oci-layout");
    // No PATH in the image's Env: the default one is added, as Docker does at run time.
    assert.deepEqual(img.config, { env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "ARCH=amd64"], workingDir: "", user: "", entrypoint: [], cmd: ["/bin/true"] });
    assert.deepEqual(await snapshot(img.rootfs), [
      "./ d 0755 " + own("0:0"),
      "etc/ d 0755 " + own("0:0"),
      "etc/arch f 0644 " + own("0:0") + ' "amd64"',
      "etc/layer2 f 0644 " + own("0:0") + ' "amd64 2"',
    ]);
  });

  test("zstd layers (Debian's zstd command made them) unpack like gzip ones", async () => {
    const zlayout = ociLayout({ amd64: spec("amd64") }, { zstd: true });
    assert.match(zlayout.tar.toString("latin1"), /tar\+zstd/);
    const img = await store.import("ghcr.io/test/zstd:1", await file("oci-zstd.tar", zlayout.tar), { platform: "linux/amd64" });
    assert.equal(img.digest, zlayout.configDigests.amd64);
    assert.deepEqual((await snapshot(img.rootfs)).filter((l) => l.includes(" f ")).map((l) => l.slice(l.indexOf('"'))), ['"amd64"', '"amd64 2"']);
  });

  test("a zstd layer decoding to more than MATCHLOCK_MAX_LAYER_BYTES is refused, named, and nothing is stored", async () => {
    const before = (await store.list()).map((i) => i.ref);
    // Not an image already stored (that would not be unpacked again).
    const zlayout = ociLayout({ amd64: spec("amd64-big") }, { zstd: true });
    // 2 KiB: layer 1 applied would fit (3 headers and 10 bytes), but its decoded tar does not.
    process.env.MATCHLOCK_MAX_LAYER_BYTES = "2K";
    try {
      await assert.rejects(store.import("ghcr.io/test/zstd-big:1", await file("oci-zstd-big.tar", zlayout.tar), { platform: "linux/amd64" }),
        // Every zstd layer is decoded to disk once (its diff_id checked on the way): layer 1's
        // decoded tar (3 headers, 10 bytes and the end blocks: 3072 bytes) is already too big.
        /cannot unpack the image \(layer 1 of 2\): layer sha256:[0-9a-f]{64} is refused: it decodes to more than 2048 bytes: at most 2048 bytes is accepted \(MATCHLOCK_MAX_LAYER_BYTES\)$/);
    } finally {
      delete process.env.MATCHLOCK_MAX_LAYER_BYTES;
    }
    await assertStoreHolds(before);
  });

  test("a gzip bomb layer (8 MiB of zeros in 8 KiB) past MATCHLOCK_MAX_LAYER_BYTES is refused, named, and nothing is stored", async () => {
    const before = (await store.list()).map((i) => i.ref);
    const zeros = "\0".repeat(8 * 2 ** 20);
    const bomb = ociLayout({ amd64: { layers: [tarBytes([{ path: "ok", body: "small" }]), tarBytes([{ path: "zeros", body: zeros }])], config: {} } });
    assert.ok(bomb.tar.length < 64 * 1024, `the archive is small: ${bomb.tar.length} bytes`);
    process.env.MATCHLOCK_MAX_LAYER_BYTES = "1M";
    try {
      await assert.rejects(store.import("ghcr.io/test/gzip-bomb:1", await file("oci-gzip-bomb.tar", bomb.tar), { platform: "linux/amd64" }),
        /^BadLayerError: cannot unpack the image \(layer 2 of 2\): layer sha256:[0-9a-f]{64} is refused: it unpacks to more than 1 MiB: at most 1 MiB is accepted \(MATCHLOCK_MAX_LAYER_BYTES\)$/);
      // A plain rootfs tarball, gzip'd, is held to the same cap.
      await assert.rejects(store.import("local/gzip-bomb:1", await file("rootfs-bomb.tar.gz", gzip(tarBytes([{ path: "zeros", body: zeros }])))),
        /^BadLayerError: cannot unpack the image: layer 1 is refused: it unpacks to more than 1 MiB/);
      await assertStoreHolds(before);
      // Under a cap it fits, the same archive unpacks whole.
      process.env.MATCHLOCK_MAX_LAYER_BYTES = "9M";
      const img = await store.import("ghcr.io/test/gzip-bomb:1", await file("oci-gzip-bomb.tar", bomb.tar), { platform: "linux/amd64" });
      assert.equal((await readFile(join(img.rootfs, "zeros"))).length, 8 * 2 ** 20);
      assert.ok(await store.remove("ghcr.io/test/gzip-bomb:1"));
    } finally {
      delete process.env.MATCHLOCK_MAX_LAYER_BYTES;
    }
    await assertStoreHolds(before);
  });

  test("takes another platform when asked, from a gzip'd layout", async () => {
    const img = await store.import("ghcr.io/test/multi:arm", await file("oci.tar.gz", gzip(layout.tar)), { platform: "linux/arm64" });
    assert.equal(img.digest, layout.configDigests.arm64);
    assert.deepEqual((await snapshot(img.rootfs)).filter((l) => l.includes(" f ")).map((l) => l.slice(l.indexOf('"'))), ['"arm64"', '"arm64 2"']);
  });

  test("a platform the index lacks is a clear error", async () => {
    await assert.rejects(store.import("ghcr.io/test/multi:s390x", await file("oci2.tar", layout.tar), { platform: "linux/s390x" }),
      /no image for linux\/s390x in the archive \(it has: linux\/arm64, linux\/amd64\)/);
  });

  test("a corrupted blob is refused and nothing is stored", async () => {
    const before = (await store.list()).map((i) => i.ref);
    const bad = ociLayout({ amd64: spec("amd64") }, { corruptLayerOf: "amd64" });
    await assert.rejects(store.import("local/oci-bad", await file("oci-bad.tar", bad.tar)), /layer sha256:[0-9a-f]{64} is corrupted/);
    await assertStoreHolds(before);
  });
});

describe("path escapes", () => {
  let outside: string;
  before(async () => {
    outside = join(dir, "outside");
    await mkdir(outside);
    await writeFile(join(outside, "victim"), "must survive");
  });
  const untouched = async () => assert.deepEqual((await readdir(outside)).sort(), ["victim"]);

  async function refused(name: string, tar: Buffer, why: RegExp): Promise<void> {
    const before = (await store.list()).map((i) => i.ref);
    await assert.rejects(store.import(`local/${name}`, await file(`${name}.tar`, tar)), why);
    await untouched();
    await assertStoreHolds(before);
  }

  test("a ../ entry is refused", async () => {
    await refused("dotdot", tarBytes([{ path: "ok", body: "1" }, { path: `../../../../../../..${outside}/escaped`, body: "x" }]), /contains "\.\."/);
    await refused("dotdot-mid", tarBytes([{ path: "a/../../escaped", body: "x" }]), /contains "\.\."/);
  });

  test("writing through a symlink planted in the same layer is refused", async () => {
    await refused("symlink-same", tarBytes([{ path: "evil", type: "SymbolicLink", linkpath: outside }, { path: "evil/escaped", body: "x" }]),
      /would be written through the symbolic link \/evil/);
  });

  test("writing through a symlink planted by a lower layer is refused", async () => {
    const { tar } = dockerSave({
      layers: [
        tarBytes([{ path: "d/", type: "Directory" }, { path: "d/evil", type: "SymbolicLink", linkpath: "../../../../../../../../.." + outside }]),
        tarBytes([{ path: "d/evil/escaped", body: "x" }]),
      ],
      config: {},
    });
    await refused("symlink-lower", tar, /layer 2 of 2.*through the symbolic link \/d\/evil/);
  });

  test("a hard link to a path outside the root is refused", async () => {
    await refused("hardlink", tarBytes([{ path: "hl", type: "Link", linkpath: `../../../../../..${outside}/victim` }]), /contains "\.\."/);
    await refused("hardlink-via-symlink", tarBytes([
      { path: "evil", type: "SymbolicLink", linkpath: outside },
      { path: "hl", type: "Link", linkpath: "evil/victim" },
    ]), /is not a file inside the image root/);
  });

  test("whiteouts never delete through a symlink", async () => {
    const { tar } = dockerSave({
      layers: [
        tarBytes([{ path: "evil", type: "SymbolicLink", linkpath: outside }]),
        tarBytes([{ path: "evil/.wh.victim" }, { path: "evil/.wh..wh..opq" }]),
      ],
      config: {},
    });
    const img = await store.import("local/whiteout-symlink", await file("wh-symlink.tar", tar));
    await untouched();
    assert.deepEqual(await snapshot(img.rootfs), ["./ d 0755 " + own("0:0"), `evil l ${own("0:0")} -> ${outside}`]);
    await store.remove("local/whiteout-symlink");
  });

  test("an archive that is not a tarball is a clear error", async () => {
    await assert.rejects(store.import("local/junk", await file("junk.tar", Buffer.from("this is not a tar archive at all\n".repeat(40)))), /not a readable tar archive/);
    await assert.rejects(store.import("local/missing", join(dir, "nope.tar")), /cannot import .*nope\.tar/);
    await assert.rejects(store.import("Bad Ref", join(dir, "nope.tar")), /invalid image reference/);
  });
});

describe("a layer that does not match its config", () => {
  test("is refused, so nobody can plant content under another image's digest", async () => {
    const genuine = { layers: [tarBytes([{ path: "etc/", type: "Directory" }, { path: "etc/real", body: "genuine" }])], config: { Cmd: ["/bin/true"] } };
    const evil = { layers: [tarBytes([{ path: "etc/", type: "Directory" }, { path: "etc/PWNED", body: "evil" }])], config: { Cmd: ["/bin/true"] } };
    const before = (await store.list()).map((i) => i.ref);
    const poisoned = ociLayout({ amd64: evil }, { configOf: genuine });
    // Compressed layers are checked as the store decodes them to unpack (once): gzip and zstd.
    const refused = /cannot unpack the image: layer sha256:[0-9a-f]{64} does not match the image config: its uncompressed content has digest sha256:[0-9a-f]{64}, the config's rootfs.diff_ids say sha256:[0-9a-f]{64}$/;
    await assert.rejects(store.import("evil/thing:1", await file("poison.tar", poisoned.tar)), refused);
    await assertStoreHolds(before);
    const zstdPoisoned = ociLayout({ amd64: evil }, { configOf: genuine, zstd: true });
    await assert.rejects(store.import("evil/thing:1", await file("poison-zstd.tar", zstdPoisoned.tar)), refused);
    await assertStoreHolds(before);
    const real = await store.import("library/genuine:1", await file("genuine.tar", ociLayout({ amd64: genuine }).tar));
    assert.equal(real.digest, poisoned.configDigests.amd64);
    assert.equal(existsSync(join(real.rootfs, "etc", "PWNED")), false);
  });
});
