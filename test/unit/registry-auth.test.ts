// Registry authentication and transport security against real registries on 127.0.0.1: htpasswd
// Basic auth, the Bearer token flow (with a token server of the test's own), credentials from
// the Docker config file and from credential helpers (test-made docker-credential-* programs on
// PATH), and TLS with a test CA (MATCHLOCK_REGISTRY_CA).
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { CLI } from "../helpers/e2e.js";
import { spawnSync } from "node:child_process";
import { ImageStore } from "../../src/engine/image/index.js";
import { credentialsFor } from "../../src/engine/image/registry/credentials.js";
import { parseChallenge } from "../../src/engine/image/registry/challenge.js";
import { allowsPlainHttp } from "../../src/engine/image/registry/endpoint.js";
import { image, layer, PASSWORD, TestRegistry, USER } from "../helpers/registry.js";

let dir: string;
const img = image([layer([{ path: "hello", body: "world" }])], { Cmd: ["/hello"] });

async function dockerConfig(auths: Record<string, unknown>, more: Record<string, unknown> = {}): Promise<void> {
  await mkdir(process.env.DOCKER_CONFIG!, { recursive: true });
  await writeFile(join(process.env.DOCKER_CONFIG!, "config.json"), JSON.stringify({ auths, ...more }));
}
const b64 = (s: string) => Buffer.from(s).toString("base64");

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "matchlock-auth-test-"));
  process.env.DOCKER_CONFIG = join(dir, "docker");
  delete process.env.MATCHLOCK_REGISTRY_CA;
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("pieces", () => {
  test("WWW-Authenticate challenges", () => {
    assert.deepEqual(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"'), {
      scheme: "bearer", params: { realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:library/alpine:pull" },
    });
    assert.deepEqual(parseChallenge('Basic realm="Registry Realm"'), { scheme: "basic", params: { realm: "Registry Realm" } });
    assert.equal(parseChallenge(undefined), undefined);
  });

  test("credentials: Docker Hub's historic key, host keys, username/password fields, bad base64", async () => {
    await dockerConfig({
      "https://index.docker.io/v1/": { auth: b64("hubuser:hub:pass") },
      "reg.example:5000": { username: "u", password: "p" },
      "https://other.example": { auth: b64("nocolon") },
    });
    const file = join(process.env.DOCKER_CONFIG!, "config.json");
    assert.deepEqual(await credentialsFor("docker.io"), { username: "hubuser", password: "hub:pass", source: file });
    assert.deepEqual(await credentialsFor("reg.example:5000"), { username: "u", password: "p", source: file });
    assert.equal(await credentialsFor("ghcr.io"), undefined);
    await assert.rejects(credentialsFor("other.example"), /"auth" of "https:\/\/other.example" is not base64 of "user:password"/);
    await writeFile(join(process.env.DOCKER_CONFIG!, "config.json"), "{not json");
    await assert.rejects(credentialsFor("docker.io"), /config.json is not valid JSON/);
  });

  test("plain HTTP only for loopback or listed registries", () => {
    assert.ok(allowsPlainHttp("localhost:5000"));
    assert.ok(allowsPlainHttp("127.0.0.1:5000"));
    assert.ok(allowsPlainHttp("[::1]:5000"));
    assert.ok(!allowsPlainHttp("registry-1.docker.io"));
    assert.ok(!allowsPlainHttp("10.0.0.1:5000"));
    process.env.MATCHLOCK_INSECURE_REGISTRIES = "10.0.0.1:5000, intra.example";
    try {
      assert.ok(allowsPlainHttp("10.0.0.1:5000"));
      assert.ok(allowsPlainHttp("intra.example"));
      assert.ok(!allowsPlainHttp("10.0.0.2:5000"));
    } finally {
      delete process.env.MATCHLOCK_INSECURE_REGISTRIES;
    }
  });
});

for (const auth of ["basic", "token"] as const) {
  describe(`${auth} auth`, () => {
    let registry: TestRegistry;
    let store: ImageStore;
    before(async () => {
      registry = await TestRegistry.start({ auth });
      await registry.pushImage("private/app", img, "v1");
      store = new ImageStore(join(dir, `images-${auth}`));
    });
    after(async () => registry?.stop());

    test("without credentials: a clear error saying where they go", async () => {
      await dockerConfig({});
      await assert.rejects(store.pull(`${registry.host}/private/app:v1`), /authentication required by 127\.0\.0\.1:\d+, and .*config\.json has no credentials for 127\.0\.0\.1:\d+/);
    });

    test("with wrong credentials: authentication failed, naming the user", async () => {
      await dockerConfig({ [registry.host]: { auth: b64(`${USER}:wrong`) } });
      await assert.rejects(store.pull(`${registry.host}/private/app:v1`), /authentication failed.*"tester"/);
    });

    test("blobs redirected to storage elsewhere are fetched without the registry's credentials", async () => {
      const seen: Array<string | undefined> = [];
      // "Storage" on another origin, serving the layer the way S3 serves a presigned URL.
      const storage = createServer((req, res) => {
        seen.push(req.headers.authorization);
        const l = img.layers.find((b) => req.url === `/store/${b.digest}`);
        if (!l) return void res.writeHead(404).end();
        res.writeHead(200, { "content-length": l.bytes.length }).end(l.bytes);
      });
      await new Promise<void>((r) => storage.listen(0, "127.0.0.1", r));
      const storageUrl = `http://127.0.0.1:${(storage.address() as AddressInfo).port}/store/`;
      // In front of the registry: layer downloads answer 307 to the storage, the rest is proxied.
      const front = createServer((req, res) => {
        const layerDigest = img.layers.map((b) => b.digest).find((d) => req.url?.endsWith(`/blobs/${d}`));
        if (layerDigest && req.headers.authorization) return void res.writeHead(307, { location: `${storageUrl}${layerDigest}` }).end();
        const [host, port] = registry.host.split(":");
        const up = httpRequest({ host, port: Number(port), path: req.url, method: req.method, headers: req.headers }, (u) => {
          res.writeHead(u.statusCode ?? 502, u.headers);
          u.pipe(res);
        });
        req.pipe(up);
      });
      await new Promise<void>((r) => front.listen(0, "127.0.0.1", r));
      try {
        const name = `127.0.0.1:${(front.address() as AddressInfo).port}/private/app:v1`;
        await dockerConfig({ [name.split("/")[0]!]: { auth: b64(`${USER}:${PASSWORD}`) } });
        const pulled = await new ImageStore(join(dir, `images-redirect-${auth}`)).pull(name);
        assert.equal(await readFile(join(pulled.rootfs, "hello"), "utf8"), "world");
        assert.deepEqual(seen, [undefined], "the storage got the request, without Authorization");
      } finally {
        await new Promise((r) => front.close(r));
        await new Promise((r) => storage.close(r));
      }
    });

    test("with credentials from the Docker config: pulls", async () => {
      await dockerConfig({ [`http://${registry.host}`]: { auth: b64(`${USER}:${PASSWORD}`) } });
      const pulled = await store.pull(`${registry.host}/private/app:v1`);
      assert.equal(pulled.digest, img.config.digest);
      assert.equal(await readFile(join(pulled.rootfs, "hello"), "utf8"), "world");
    });
  });
}

describe("token auth, anonymous", () => {
  let registry: TestRegistry;
  before(async () => {
    registry = await TestRegistry.start({ auth: "token" });
    await registry.pushImage("public/app", img, "v1");
  });
  after(async () => registry?.stop());

  test("a public repository pulls with an anonymous token, as from Docker Hub", async () => {
    await dockerConfig({});
    const pulled = await new ImageStore(join(dir, "images-anonymous-token")).pull(`${registry.host}/public/app:v1`);
    assert.equal(await readFile(join(pulled.rootfs, "hello"), "utf8"), "world");
  });
});

describe("TLS with a test CA", () => {
  let registry: TestRegistry;
  let store: ImageStore;
  before(async () => {
    registry = await TestRegistry.start({ tls: true });
    await registry.pushImage("secure/app", img, "v1");
    store = new ImageStore(join(dir, "images-tls"));
    await dockerConfig({});
  });
  after(async () => registry?.stop());

  test("an untrusted certificate is refused (no fallback to plain HTTP), naming the fix", async () => {
    await assert.rejects(store.pull(`${registry.host}/secure/app:v1`), /TLS certificate is not trusted .*MATCHLOCK_REGISTRY_CA/);
  });

  test("trusted through MATCHLOCK_REGISTRY_CA: pulls over HTTPS", async () => {
    process.env.MATCHLOCK_REGISTRY_CA = registry.ca!;
    try {
      const pulled = await store.pull(`${registry.host}/secure/app:v1`);
      assert.equal(await readFile(join(pulled.rootfs, "hello"), "utf8"), "world");
    } finally {
      delete process.env.MATCHLOCK_REGISTRY_CA;
    }
  });

  test("a bad MATCHLOCK_REGISTRY_CA is a clear error", async () => {
    process.env.MATCHLOCK_REGISTRY_CA = join(dir, "missing.pem");
    try {
      await assert.rejects(store.pull(`${registry.host}/secure/app:v2`), /MATCHLOCK_REGISTRY_CA=.*missing\.pem cannot be read/);
    } finally {
      delete process.env.MATCHLOCK_REGISTRY_CA;
    }
  });
});

describe("credential helpers (credHelpers, credsStore)", () => {
  let registry: TestRegistry;
  let open: TestRegistry;
  let bin: string;
  let calls: string;
  const savedPath = process.env.PATH;
  const name = () => `${registry.host}/private/app:v1`;
  const freshStore = () => new ImageStore(join(dir, `images-helper-${Math.random().toString(36).slice(2)}`));

  /** Writes docker-credential-<helper> into the test's bin dir: logs its stdin, then runs `body`. */
  async function helper(helperName: string, body: string): Promise<void> {
    const file = join(bin, `docker-credential-${helperName}`);
    await writeFile(file, `#!/bin/sh\n[ "$1" = get ] || exit 3\nserver=$(cat)\necho "$server" >> ${JSON.stringify(calls)}\n${body}\n`);
    await chmod(file, 0o755);
  }
  const answer = (user: string, secret: string) => `printf '%s' '${JSON.stringify({ ServerURL: "x", Username: user, Secret: secret })}'`;
  const called = async () => (await readFile(calls, "utf8").catch(() => "")).split("\n").filter(Boolean);

  before(async () => {
    registry = await TestRegistry.start({ auth: "basic" });
    open = await TestRegistry.start();
    await registry.pushImage("private/app", img, "v1");
    await open.pushImage("public/app", img, "v1");
    bin = join(dir, "helper-bin");
    calls = join(dir, "helper-calls.log");
    await mkdir(bin, { recursive: true });
    process.env.PATH = `${bin}:${savedPath}`;
    await helper("good", answer(USER, PASSWORD));
    await helper("wrong", answer(USER, "the-wrong-secret-42"));
    await helper("none", "echo 'credentials not found in native keychain'; exit 1");
    await helper("broken", "echo 'the keyring is locked' >&2; exit 4");
    await helper("garbled", "echo 'Secret: the-garbled-secret-43 (not JSON)'");
    await helper("flood", "printf '{\"Username\":\"u\",\"Secret\":\"the-flood-secret-44'; exec yes x");
  });
  after(async () => {
    process.env.PATH = savedPath;
    await registry?.stop();
    await open?.stop();
  });

  test("credHelpers: the registry's helper is asked with the registry host on stdin; the pull works", async () => {
    await rm(calls, { force: true });
    await dockerConfig({ [registry.host]: {} }, { credHelpers: { [registry.host]: "good", "other.example": "broken" }, credsStore: "broken" });
    const pulled = await freshStore().pull(name());
    assert.equal(await readFile(join(pulled.rootfs, "hello"), "utf8"), "world");
    assert.deepEqual(await called(), [registry.host], "asked once, for this registry only");
  });

  test("credsStore: the default helper for every registry", async () => {
    await dockerConfig({}, { credsStore: "good" });
    const pulled = await freshStore().pull(name());
    assert.equal(pulled.digest, img.config.digest);
  });

  test("a public registry never runs the helper", async () => {
    await rm(calls, { force: true });
    await dockerConfig({}, { credsStore: "broken" });
    const pulled = await freshStore().pull(`${open.host}/public/app:v1`);
    assert.equal(pulled.digest, img.config.digest);
    assert.deepEqual(await called(), []);
  });

  test("a helper with nothing for the registry: anonymous, then the usual 'authentication required'", async () => {
    await dockerConfig({}, { credsStore: "none" });
    await assert.rejects(freshStore().pull(name()), /authentication required by 127\.0\.0\.1:\d+/);
  });

  test("a missing helper, a failing one and one that answers junk are clear errors", async () => {
    await dockerConfig({}, { credHelpers: { [registry.host]: "nothere" } });
    await assert.rejects(freshStore().pull(name()), /private\/app:v1: 127\.0\.0\.1:\d+ asks for credentials, and looking them up failed: credHelpers\["127\.0\.0\.1:\d+"\] in .*config\.json says to ask the credential helper docker-credential-nothere, which is not installed \(not found on PATH\)/);
    await dockerConfig({}, { credsStore: "broken" });
    await assert.rejects(freshStore().pull(name()), /the credential helper docker-credential-broken \(from credsStore in .*config\.json\) failed for 127\.0\.0\.1:\d+ \(exit status 4\): the keyring is locked/);
    await dockerConfig({}, { credsStore: "garbled" });
    await assert.rejects(freshStore().pull(name()), (err: Error) => {
      assert.match(err.message, /docker-credential-garbled .* answered for 127\.0\.0\.1:\d+ with something that is not JSON/);
      assert.ok(!err.message.includes("the-garbled-secret-43"), "what the helper printed is not repeated");
      return true;
    });
    await dockerConfig({}, { credsStore: "flood" });
    await assert.rejects(freshStore().pull(name()), (err: Error) => {
      assert.match(err.message, /docker-credential-flood .* printed more than 64 KiB for 127\.0\.0\.1:\d+$/);
      assert.ok(!err.message.includes("the-flood-secret-44"), "what the helper printed is not repeated");
      return true;
    });
    await dockerConfig({}, { credsStore: "../../bin/sh" });
    await assert.rejects(freshStore().pull(name()), /names the credential helper "\.\.\/\.\.\/bin\/sh", which is not a valid helper name/);
  });

  test("rejected helper credentials name the user and the helper, never the secret (also through the CLI)", async () => {
    await dockerConfig({}, { credHelpers: { [registry.host]: "wrong" } });
    await assert.rejects(freshStore().pull(name()), (err: Error) => {
      assert.match(err.message, /authentication failed: .*"tester" \(from docker-credential-wrong \(credHelpers\["127\.0\.0\.1:\d+"\] in .*config\.json\)\)/);
      assert.ok(!err.message.includes("the-wrong-secret-42"));
      return true;
    });
    const r = spawnSync(process.execPath, [CLI, "pull", name()], { env: { ...process.env, MATCHLOCK_IMAGES: join(dir, "images-helper-cli") }, encoding: "utf8" });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /authentication failed/);
    assert.ok(!`${r.stdout}${r.stderr}`.includes("the-wrong-secret-42"));
  });
});
