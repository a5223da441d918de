// HTTP(S) for registries, over undici. Redirects are followed by hand because blob downloads are
// redirected to storage elsewhere (S3, a CDN) which must not receive the registry's token, and an
// HTTPS registry must not be able to push us onto plain HTTP.
// TLS trust: the system roots plus $NODE_EXTRA_CA_CERTS (Node applies it) plus $MATCHLOCK_REGISTRY_CA,
// a PEM file, e.g. for a registry signed by a private CA.
import { readFileSync } from "node:fs";
import { rootCertificates } from "node:tls";
import { Agent, request, type Dispatcher } from "undici";
import { allowsPlainHttp } from "./endpoint.js";
import { settings } from "../../../settings/settings.js";
import { EngineError, type ErrorKind } from "../../../protocol/errors.js";

const MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData["body"];
  url: URL;
}

export function header(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** A failure to talk to the server at all (refused, reset, TLS, timeout), as opposed to an HTTP status. */
export class NetworkError extends EngineError {
  readonly kind: ErrorKind = "unavailable";

  constructor(message: string, readonly code: string | undefined, options?: ErrorOptions) {
    super(message, options);
  }

  /** The server answered TLS but its certificate is not trusted: not a reason to try plain HTTP. */
  get isCertificateProblem(): boolean {
    return /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|HOSTNAME|IP_MISMATCH/i.test(this.code ?? "");
  }
}

function extraCa(): string[] | undefined {
  const file = settings.registryCa.read();
  if (!file) return undefined;
  let pem: string;
  try {
    pem = readFileSync(file, "utf8");
  } catch (e) {
    throw new Error(`MATCHLOCK_REGISTRY_CA=${file} cannot be read: ${(e as Error).message}`);
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new Error(`MATCHLOCK_REGISTRY_CA=${file} holds no PEM certificate`);
  return [...rootCertificates, pem];
}

function describe(err: unknown): string {
  const e = err as Error & { code?: string; cause?: Error & { code?: string } };
  const inner = e.cause ?? e;
  return [inner.code, inner.message].filter(Boolean).join(": ") || String(err);
}

export class Transport {
  private readonly dispatcher: Agent;

  constructor() {
    const ca = extraCa();
    this.dispatcher = new Agent({ connect: ca ? { ca } : {}, headersTimeout: 60_000, bodyTimeout: 60_000 });
  }

  async get(url: URL, headers: Record<string, string>): Promise<HttpResponse> {
    let current = url;
    let sending = { ...headers };
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      let res: Dispatcher.ResponseData;
      try {
        res = await request(current, { method: "GET", headers: sending, dispatcher: this.dispatcher });
      } catch (e) {
        const code = ((e as { cause?: { code?: string } }).cause ?? (e as { code?: string })).code;
        throw new NetworkError(`cannot reach ${current.host}: ${describe(e)}`, code, { cause: e });
      }
      const location = res.headers.location;
      if (!REDIRECTS.has(res.statusCode) || !location) {
        return { status: res.statusCode, headers: res.headers, body: res.body, url: current };
      }
      await res.body.dump();
      const next = new URL(String(location), current);
      if (next.protocol !== "https:" && next.protocol !== "http:") throw new Error(`${current.host} redirected to unsupported URL ${next.protocol}//...`);
      if (next.protocol === "http:" && current.protocol === "https:" && !allowsPlainHttp(next.host)) {
        throw new Error(`${current.host} redirected to plain HTTP (${next.host}), which is refused`);
      }
      if (next.origin !== current.origin) {
        const { authorization: _dropped, ...rest } = sending;
        sending = rest;
      }
      current = next;
    }
    throw new Error(`too many redirects from ${url.host}`);
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}

/** Reads a (small) response body, refusing more than `limit` bytes. */
export async function readBody(res: HttpResponse, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      res.body.destroy();
      throw new Error(`${what} from ${res.url.host} is larger than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
