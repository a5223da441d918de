// A client for one repository of an OCI distribution registry (distribution-spec "pull"):
// manifests by tag or digest, blobs streamed to files with their digest and size verified, and
// the auth dance: anonymous first, then on 401 whatever the WWW-Authenticate challenge asks for
// (a Bearer token from the realm, with credentials if we have some, or Basic credentials).
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { rm, stat } from "node:fs/promises";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { DigestMismatchError, sha256Bytes } from "../digest.js";
import { familiarRef } from "../reference.js";
import { parseChallenge, type Challenge } from "./challenge.js";
import { credentialsFor, dockerConfigFile, type Credentials } from "./credentials.js";
import { allowsPlainHttp, apiHost } from "./endpoint.js";
import { header, NetworkError, readBody, Transport, type HttpResponse } from "./http.js";
import { EngineError, type ErrorKind } from "../../../protocol/errors.js";

const MANIFEST_ACCEPT = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_TOKEN_BYTES = 1024 * 1024;

/** The registry said no, or could not be talked to; the message says which and names the image. */
export class RegistryError extends EngineError {
  readonly kind: ErrorKind = "failed";
}

export interface FetchedManifest {
  bytes: Buffer;
  json: unknown;
  mediaType: string | undefined;
  digest: string;
}

/** The registry's own words: {"errors":[{"code":"MANIFEST_UNKNOWN","message":"..."}]}. */
async function registryErrors(res: HttpResponse): Promise<{ codes: string[]; text: string }> {
  try {
    const body = JSON.parse((await readBody(res, 64 * 1024, "error")).toString("utf8")) as { errors?: Array<{ code?: string; message?: string }> };
    const errors = Array.isArray(body.errors) ? body.errors : [];
    return { codes: errors.map((e) => String(e.code ?? "")), text: errors.map((e) => [e.code, e.message].filter(Boolean).join(": ")).join("; ") };
  } catch {
    return { codes: [], text: "" };
  }
}

export class RegistryClient {
  private scheme: "https:" | "http:" | undefined;
  private authorization: string | undefined;
  private credentials: Credentials | undefined;
  private credentialsLooked = false;
  readonly host: string;

  /** `name` is the image as the user wrote it, for messages. */
  constructor(
    readonly domain: string,
    readonly repository: string,
    readonly name: string,
    private readonly transport = new Transport(),
  ) {
    this.host = apiHost(domain);
  }

  static open(domain: string, repository: string, name: string): RegistryClient {
    return new RegistryClient(domain, repository, name);
  }

  /**
   * The user's credentials for this registry, looked up only once the registry asks for them, so
   * that public pulls never run a credential helper.
   */
  private async lookUpCredentials(): Promise<Credentials | undefined> {
    if (!this.credentialsLooked) {
      try {
        this.credentials = await credentialsFor(this.domain);
      } catch (e) {
        throw new RegistryError(`${this.name}: ${this.host} asks for credentials, and looking them up failed: ${(e as Error).message}`, { cause: e });
      }
      this.credentialsLooked = true;
    }
    return this.credentials;
  }

  async close(): Promise<void> {
    await this.transport.close();
  }

  async manifest(reference: string): Promise<FetchedManifest> {
    const res = await this.get(`manifests/${reference}`, { accept: MANIFEST_ACCEPT });
    if (res.status !== 200) throw await this.failure(res, `manifest ${reference}`);
    const bytes = await readBody(res, MAX_MANIFEST_BYTES, "manifest");
    let json: unknown;
    try {
      json = JSON.parse(bytes.toString("utf8"));
    } catch (e) {
      throw new RegistryError(`${this.name}: the manifest from ${this.host} is not valid JSON (${(e as Error).message})`);
    }
    const type = header(res, "content-type")?.split(";")[0]?.trim();
    return { bytes, json, mediaType: (json as { mediaType?: string } | null)?.mediaType ?? type, digest: sha256Bytes(bytes) };
  }

  /**
   * Streams a blob into `file`, verifying as it goes that it is no bigger than `size` and, at
   * the end, its size and sha256. When `file` already holds the start of the blob (an earlier
   * download that was cut off) only the rest is requested, if the registry supports ranges.
   * A corrupt download is deleted; one cut off by the network is kept for the next attempt.
   */
  async downloadBlob(digest: string, size: number, file: string, onBytes: (n: number) => void): Promise<void> {
    const what = `${this.name}: blob ${digest} from ${this.host}`;
    const have = (await stat(file).catch(() => undefined))?.size ?? 0;
    let offset = have > 0 && have < size ? have : 0;
    const res = await this.get(`blobs/${digest}`, offset > 0 ? { range: `bytes=${offset}-` } : {});
    if (res.status === 206 && !String(header(res, "content-range") ?? "").startsWith(`bytes ${offset}-`)) {
      await res.body.dump();
      throw new RegistryError(`${what}: the registry answered a range request with the wrong range`);
    }
    if (res.status !== 206) offset = 0;
    if (res.status !== 200 && res.status !== 206) throw await this.failure(res, `blob ${digest}`);

    const hash = createHash("sha256");
    if (offset > 0) {
      for await (const chunk of createReadStream(file, { end: offset - 1 })) hash.update(chunk as Buffer);
      onBytes(offset);
    }
    let received = offset;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        received += chunk.length;
        if (received > size) return done(new DigestMismatchError(`${what} is corrupted: it is larger than the ${size} bytes its manifest says`));
        hash.update(chunk);
        onBytes(chunk.length);
        done(null, chunk);
      },
    });
    try {
      await pipeline(res.body, meter, createWriteStream(file, offset > 0 ? { flags: "r+", start: offset } : { mode: 0o600 }));
      if (received !== size) throw new DigestMismatchError(`${what} is corrupted: ${received} bytes, its manifest says ${size}`);
      const actual = `sha256:${hash.digest("hex")}`;
      if (actual !== digest) throw new DigestMismatchError(`${what} is corrupted: its content has digest ${actual}`);
    } catch (e) {
      if (e instanceof DigestMismatchError) {
        await rm(file, { force: true });
        throw e;
      }
      throw new RegistryError(`${what}: download failed: ${(e as Error).message}`, { cause: e });
    }
  }

  private async get(path: string, headers: Record<string, string>): Promise<HttpResponse> {
    let res = await this.send(path, headers);
    if (res.status !== 401) return res;
    const challenge = parseChallenge(header(res, "www-authenticate"));
    await res.body.dump();
    if (!challenge) throw new RegistryError(`${this.name}: ${this.host} refused access (401) without an authentication challenge`);
    this.authorization = await this.authenticate(challenge);
    res = await this.send(path, headers);
    if (res.status === 401) throw await this.failure(res, path);
    return res;
  }

  /** Picks https, falling back to http only where plain HTTP is allowed (loopback, listed hosts). */
  private async send(path: string, headers: Record<string, string>): Promise<HttpResponse> {
    const all = this.authorization ? { ...headers, authorization: this.authorization } : headers;
    const url = (scheme: string) => new URL(`${scheme}//${this.host}/v2/${this.repository}/${path}`);
    if (this.scheme) return this.wrapNetwork(() => this.transport.get(url(this.scheme!), all));
    try {
      const res = await this.transport.get(url("https:"), all);
      this.scheme = "https:";
      return res;
    } catch (e) {
      if (!(e instanceof NetworkError) || e.isCertificateProblem || !allowsPlainHttp(this.host)) throw this.unreachable(e);
    }
    const res = await this.wrapNetwork(() => this.transport.get(url("http:"), all));
    this.scheme = "http:";
    return res;
  }

  private async wrapNetwork<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw this.unreachable(e);
    }
  }

  private unreachable(e: unknown): Error {
    if (!(e instanceof NetworkError)) return e as Error;
    if (e.isCertificateProblem) {
      return new RegistryError(`${this.name}: registry ${this.host}: its TLS certificate is not trusted (${e.message}); give its CA in MATCHLOCK_REGISTRY_CA or NODE_EXTRA_CA_CERTS`, { cause: e });
    }
    return new RegistryError(`${this.name}: registry ${this.host} is unreachable (${e.message})`, { cause: e });
  }

  private async authenticate(c: Challenge): Promise<string> {
    await this.lookUpCredentials();
    const basic = this.credentials && `Basic ${Buffer.from(`${this.credentials.username}:${this.credentials.password}`).toString("base64")}`;
    if (c.scheme === "basic") {
      if (!basic) throw this.needCredentials();
      return basic;
    }
    if (c.scheme !== "bearer") throw new RegistryError(`${this.name}: ${this.host} asks for unsupported authentication "${c.scheme}"`);
    let realm: URL;
    try {
      realm = new URL(c.params.realm ?? "");
    } catch {
      throw new RegistryError(`${this.name}: ${this.host} sent a Bearer challenge without a valid realm URL`);
    }
    if (realm.protocol !== "https:" && !(realm.protocol === "http:" && allowsPlainHttp(realm.host))) {
      throw new RegistryError(`${this.name}: ${this.host}'s token service ${realm.protocol}//${realm.host} is not HTTPS; refused`);
    }
    if (c.params.service) realm.searchParams.set("service", c.params.service);
    realm.searchParams.set("scope", `repository:${this.repository}:pull`);
    const res = await this.wrapNetwork(() => this.transport.get(realm, basic ? { authorization: basic } : {}));
    if (res.status === 401 || res.status === 403) {
      await res.body.dump();
      throw this.credentials
        ? new RegistryError(`${this.name}: authentication failed: ${realm.host} rejected the credentials of user "${this.credentials.username}" (from ${this.credentials.source})`)
        : this.needCredentials();
    }
    if (res.status !== 200) {
      await res.body.dump();
      throw new RegistryError(`${this.name}: the token service ${realm.host} answered HTTP ${res.status}`);
    }
    const body = await readBody(res, MAX_TOKEN_BYTES, "token");
    let token: unknown;
    try {
      const json = JSON.parse(body.toString("utf8")) as { token?: unknown; access_token?: unknown };
      token = json.token ?? json.access_token;
    } catch {
      token = undefined;
    }
    if (typeof token !== "string" || token === "") throw new RegistryError(`${this.name}: the token service ${realm.host} sent no token`);
    return `Bearer ${token}`;
  }

  private needCredentials(): RegistryError {
    return new RegistryError(`${this.name}: authentication required by ${this.host}, and ${dockerConfigFile()} has no credentials for ${this.domain} (add them with "docker login ${this.domain}")`);
  }

  /** A clear error for a non-200 answer: unknown manifest, denied access, or the registry's own words. */
  private async failure(res: HttpResponse, what: string): Promise<RegistryError> {
    const { codes, text } = await registryErrors(res);
    const image = familiarRef(this.name);
    if (res.status === 404 || codes.includes("MANIFEST_UNKNOWN") || codes.includes("NAME_UNKNOWN")) {
      if (codes.includes("NAME_UNKNOWN")) return new RegistryError(`${image}: repository unknown: ${this.host} has no repository ${this.repository}`);
      if (what.startsWith("blob")) return new RegistryError(`${image}: blob unknown: ${this.host} has no ${what} that its manifest names`);
      return new RegistryError(`${image}: manifest unknown: ${this.host} has no ${what.replace(/^manifest /, "tag or digest ")} in ${this.repository}`);
    }
    if (res.status === 401 || res.status === 403) {
      return this.credentials
        ? new RegistryError(`${image}: authentication failed: ${this.host} denied access with the credentials of user "${this.credentials.username}" (from ${this.credentials.source})${text ? `: ${text}` : ""}`)
        : new RegistryError(`${image}: pull access denied by ${this.host}: the repository does not exist or needs credentials${this.credentialsLooked ? `, and ${dockerConfigFile()} has none for ${this.domain}` : ""}`);
    }
    return new RegistryError(`${image}: ${this.host} answered HTTP ${res.status} for ${what}${text ? `: ${text}` : ""}`);
  }
}
