// A real OCI registry for tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1 with
// filesystem storage in a temp dir, optionally behind htpasswd basic auth, token auth (served by
// a tiny token server here) or TLS with a test CA. Images are built here from small layer
// tarballs (image-tarballs.ts), gzip'd or zstd'd, and pushed with the distribution API itself (monolithic blob uploads + manifest PUT).
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createHash, createSign, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { createServer as createNetServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { gunzipSync } from "node:zlib";
import { Agent, request } from "undici";
import { gzip, tarBytes, type TarEntry } from "./image-tarballs.js";

const execFileP = promisify(execFile);
export const REGISTRY_BINARY = "/usr/bin/docker-registry";

export type AuthMode = "none" | "basic" | "token";

export interface RegistryOptions {
  auth?: AuthMode;
  tls?: boolean;
}

export const USER = "tester";
export const PASSWORD = "s3cret-pass";

async function freePort(): Promise<number> {
  const srv = createNetServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  await execFileP("openssl", args, { cwd });
}

/** A CA and a server certificate for 127.0.0.1 signed by it. */
async function makeTlsFiles(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  await openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=matchlock test CA"], dir);
  await openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"], dir);
  await writeFile(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  await openssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf"], dir);
  return { ca: join(dir, "ca.pem"), cert: join(dir, "server.pem"), key: join(dir, "server.key") };
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString("base64url");

/**
 * The token server distribution's "token" auth expects: checks Basic credentials (none needed to
 * pull "public/..." repositories), returns an
 * RS256 JWT whose x5c header carries a certificate the registry trusts (its rootcertbundle).
 */
async function startTokenServer(dir: string): Promise<{ server: Server; url: string; bundle: string }> {
  await openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "token.key", "-out", "token.pem", "-days", "2", "-subj", "/CN=matchlock test token issuer"], dir);
  const key = await readFile(join(dir, "token.key"), "utf8");
  const certPem = await readFile(join(dir, "token.pem"), "utf8");
  const der = Buffer.from(certPem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64");
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const auth = req.headers.authorization ?? "";
    const expected = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}`;
    const scope = url.searchParams.get("scope") ?? "";
    const [, name, actions] = /^repository:(.+):([^:]+)$/.exec(scope) ?? [];
    // Like Docker Hub: anyone may pull "public/..." repositories, with an anonymous token.
    const anonymousPull = !auth && name?.startsWith("public/") && actions === "pull";
    if (auth !== expected && !anonymousPull) {
      res.writeHead(401).end(JSON.stringify({ details: "bad credentials" }));
      return;
    }
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: "RS256", typ: "JWT", x5c: [der.toString("base64")] };
    const claims = {
      iss: "matchlock-test-issuer", sub: anonymousPull ? "" : USER, aud: "matchlock-test-registry", exp: now + 600, nbf: now - 10, iat: now,
      jti: randomBytes(8).toString("hex"),
      access: name ? [{ type: "repository", name, actions: (actions ?? "").split(",") }] : [],
    };
    const unsigned = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = createSign("RSA-SHA256").update(unsigned).sign(key);
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token: `${unsigned}.${b64url(sig)}` }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`, bundle: join(dir, "token.pem") };
}

export interface Blob {
  bytes: Buffer;
  digest: string;
  /** Layers only: sha256 of the uncompressed tar (what configs list) and how the tar is compressed. */
  diffId?: string;
  mediaType?: string;
}

const sha256 = (bytes: Buffer) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

export function blob(bytes: Buffer): Blob {
  return { bytes, digest: sha256(bytes) };
}

/** A gzip'd layer of these tar entries. */
export function layer(entries: TarEntry[]): Blob {
  return compressedLayer(tarBytes(entries), "gzip");
}

/** A layer made of this tar, compressed with gzip (zlib) or zstd (Debian's zstd command). */
export function compressedLayer(tar: Buffer, how: "gzip" | "zstd"): Blob {
  const bytes = how === "gzip" ? gzip(tar) : execFileSync("zstd", ["-q", "-c", "-3"], { input: tar, maxBuffer: 1 << 30 });
  return { ...blob(bytes), diffId: sha256(tar), mediaType: `application/vnd.oci.image.layer.v1.tar+${how}` };
}

export interface TestImage {
  manifest: Blob;
  config: Blob;
  layers: Blob[];
}

/** sha256 of the uncompressed tar, as configs list it (umoci checks it). */
function diffId(l: Blob): string {
  if (l.diffId) return l.diffId;
  const gz = l.bytes[0] === 0x1f && l.bytes[1] === 0x8b;
  return gz ? blob(gunzipSync(l.bytes)).digest : l.digest;
}

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";

/** An OCI image of these layers, its config carrying `config` (Env, Cmd, ...). */
export function image(layers: Blob[], config: Record<string, unknown> = {}, arch = "amd64", layerType = "application/vnd.oci.image.layer.v1.tar+gzip", diffIds = layers.map(diffId)): TestImage {
  const cfg = blob(Buffer.from(JSON.stringify({
    architecture: arch, os: "linux", created: "2026-01-01T00:00:00Z", config,
    rootfs: { type: "layers", diff_ids: diffIds },
  })));
  const manifest = blob(Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST,
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: cfg.digest, size: cfg.bytes.length },
    layers: layers.map((l) => ({ mediaType: l.mediaType ?? layerType, digest: l.digest, size: l.bytes.length })),
  })));
  return { manifest, config: cfg, layers };
}

export function index(entries: Array<{ image: TestImage; arch: string }>): Blob {
  return blob(Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_INDEX,
    manifests: entries.map((e) => ({ mediaType: OCI_MANIFEST, digest: e.image.manifest.digest, size: e.image.manifest.bytes.length, platform: { os: "linux", architecture: e.arch } })),
  })));
}

export class TestRegistry {
  private constructor(
    readonly dir: string,
    readonly host: string,
    readonly ca: string | undefined,
    private readonly proc: ChildProcess,
    private readonly tokenServer: Server | undefined,
    private readonly dispatcher: Agent,
    private readonly auth: AuthMode,
    readonly logs: () => string,
  ) {}

  static async start(opts: RegistryOptions = {}): Promise<TestRegistry> {
    if (!existsSync(REGISTRY_BINARY)) throw new Error(`${REGISTRY_BINARY} is missing: install Debian's docker-registry (scripts/install-deps.sh)`);
    const dir = await mkdtemp(join(tmpdir(), "matchlock-registry-"));
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const auth = opts.auth ?? "none";
    const lines = [
      "version: 0.1",
      "log:", "  level: warn", "  accesslog:", "    disabled: true",
      "storage:", `  filesystem:`, `    rootdirectory: ${join(dir, "storage")}`, "  delete:", "    enabled: true",
      "http:", `  addr: ${host}`, `  secret: ${randomBytes(16).toString("hex")}`,
    ];
    let ca: string | undefined;
    if (opts.tls) {
      const tls = await makeTlsFiles(dir);
      ca = tls.ca;
      lines.push("  tls:", `    certificate: ${tls.cert}`, `    key: ${tls.key}`);
    }
    let tokenServer: Server | undefined;
    if (auth === "basic") {
      const { stdout } = await execFileP("htpasswd", ["-Bbn", USER, PASSWORD]);
      await writeFile(join(dir, "htpasswd"), stdout);
      lines.push("auth:", "  htpasswd:", "    realm: matchlock-test", `    path: ${join(dir, "htpasswd")}`);
    } else if (auth === "token") {
      const t = await startTokenServer(dir);
      tokenServer = t.server;
      lines.push("auth:", "  token:", `    realm: ${t.url}`, "    service: matchlock-test-registry", "    issuer: matchlock-test-issuer", `    rootcertbundle: ${t.bundle}`);
    }
    const config = join(dir, "config.yml");
    await writeFile(config, `${lines.join("\n")}\n`);
    const proc = spawn(REGISTRY_BINARY, ["serve", config], { stdio: ["ignore", "pipe", "pipe"] });
    let log = "";
    proc.stdout!.on("data", (d) => (log += d));
    proc.stderr!.on("data", (d) => (log += d));
    const dispatcher = new Agent({ connect: ca ? { ca: await readFile(ca, "utf8") } : {} });
    const reg = new TestRegistry(dir, host, ca, proc, tokenServer, dispatcher, auth, () => log);
    await reg.waitUp();
    return reg;
  }

  get scheme(): string {
    return this.ca ? "https" : "http";
  }

  private async waitUp(): Promise<void> {
    const deadline = Date.now() + 60_000; // a start takes well under a second, except on a loaded machine
    for (;;) {
      if (this.proc.exitCode !== null) throw new Error(`docker-registry exited: ${this.logs()}`);
      try {
        const r = await request(`${this.scheme}://${this.host}/v2/`, { dispatcher: this.dispatcher });
        await r.body.dump();
        if (r.statusCode === 200 || r.statusCode === 401) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`docker-registry did not come up on ${this.host}: ${this.logs()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Authorization for pushing (push+pull scope) under the registry's auth mode. */
  private async authFor(repo: string): Promise<Record<string, string>> {
    const basic = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}`;
    if (this.auth === "basic") return { authorization: basic };
    if (this.auth !== "token") return {};
    const probe = await request(`${this.scheme}://${this.host}/v2/`, { dispatcher: this.dispatcher });
    await probe.body.dump();
    const realm = /realm="([^"]+)"/.exec(String(probe.headers["www-authenticate"]))![1]!;
    const r = await request(`${realm}?service=matchlock-test-registry&scope=repository:${repo}:push,pull`, { headers: { authorization: basic } });
    const { token } = (await r.body.json()) as { token: string };
    return { authorization: `Bearer ${token}` };
  }

  private async call(method: "POST" | "PUT" | "HEAD", url: string, headers: Record<string, string>, body?: Buffer): Promise<{ status: number; location?: string }> {
    const r = await request(url, { method, headers, body, dispatcher: this.dispatcher });
    const text = await r.body.text();
    if (r.statusCode >= 300) throw new Error(`${method} ${url}: HTTP ${r.statusCode} ${text}`);
    const location = r.headers.location;
    return { status: r.statusCode, ...(location ? { location: String(location) } : {}) };
  }

  async pushBlob(repo: string, b: Blob): Promise<void> {
    const auth = await this.authFor(repo);
    const start = await this.call("POST", `${this.scheme}://${this.host}/v2/${repo}/blobs/uploads/`, auth);
    const url = new URL(start.location!, `${this.scheme}://${this.host}`);
    url.searchParams.set("digest", b.digest);
    await this.call("PUT", url.toString(), { ...auth, "content-type": "application/octet-stream" }, b.bytes);
  }

  async pushManifest(repo: string, reference: string, m: Blob, mediaType: string): Promise<void> {
    const auth = await this.authFor(repo);
    await this.call("PUT", `${this.scheme}://${this.host}/v2/${repo}/manifests/${reference}`, { ...auth, "content-type": mediaType }, m.bytes);
  }

  /** Pushes an image's blobs and manifest; tags it when `tag` is given. */
  async pushImage(repo: string, img: TestImage, tag?: string): Promise<void> {
    for (const b of [img.config, ...img.layers]) await this.pushBlob(repo, b);
    await this.pushManifest(repo, tag ?? img.manifest.digest, img.manifest, OCI_MANIFEST);
  }

  async pushIndex(repo: string, tag: string, entries: Array<{ image: TestImage; arch: string }>): Promise<Blob> {
    for (const e of entries) await this.pushImage(repo, e.image);
    const idx = index(entries);
    await this.pushManifest(repo, tag, idx, OCI_INDEX);
    return idx;
  }

  /** Where distribution's filesystem driver keeps a blob's bytes (to corrupt it). */
  blobDataPath(digest: string): string {
    const hex = digest.replace(/^sha256:/, "");
    return join(this.dir, "storage", "docker", "registry", "v2", "blobs", "sha256", hex.slice(0, 2), hex, "data");
  }

  private stopped: Promise<void> | undefined;

  /** Stops the registry (and token server) and deletes its storage. Idempotent. */
  stop(): Promise<void> {
    this.stopped ??= this.doStop();
    return this.stopped;
  }

  private async doStop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      const exited = new Promise((r) => this.proc.once("exit", r));
      this.proc.kill("SIGTERM");
      await exited;
    }
    await new Promise((r) => (this.tokenServer ? this.tokenServer.close(r) : r(undefined)));
    await this.dispatcher.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}
