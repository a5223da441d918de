// Registry credentials as the Docker CLI keeps them ($DOCKER_CONFIG/config.json, else
// ~/.docker/config.json), looked up as Docker does: a per-registry credential helper
// ("credHelpers": {"host": "name"}), else the default helper ("credsStore": "name"), else the
// "auths" map, keyed by registry host (Docker Hub by its historic "https://index.docker.io/v1/"
// URL), each with "auth" = base64("user:password"). Helpers are the user's own programs
// (docker-credential-<name>), run only when a registry asks for credentials.
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";

export interface Credentials {
  username: string;
  password: string;
  /** Where they came from, for messages: the config file, or the helper and its config entry. */
  source: string;
}

export function dockerConfigFile(): string {
  return join(process.env.DOCKER_CONFIG || join(homedir(), ".docker"), "config.json");
}

/** "https://index.docker.io/v1/" -> "index.docker.io"; "host:5000" stays. */
function keyHost(key: string): string {
  return key.replace(/^[a-z]+:\/\//i, "").replace(/\/.*$/, "").toLowerCase();
}

/** The names a registry's entry may be stored under. */
function aliases(domain: string): string[] {
  return domain === "docker.io" ? ["index.docker.io", "docker.io", "registry-1.docker.io"] : [domain.toLowerCase()];
}

function decode(entry: Record<string, unknown>, file: string, key: string): Credentials | undefined {
  if (typeof entry.username === "string" && typeof entry.password === "string" && entry.username) {
    return { username: entry.username, password: entry.password, source: file };
  }
  if (typeof entry.auth !== "string" || entry.auth === "") return undefined;
  const plain = Buffer.from(entry.auth, "base64").toString("utf8");
  const colon = plain.indexOf(":");
  if (colon <= 0) throw new Error(`${file}: the "auth" of ${JSON.stringify(key)} is not base64 of "user:password"`);
  return { username: plain.slice(0, colon), password: plain.slice(colon + 1), source: file };
}

/** What helpers are asked for: Docker Hub under its historic URL, other registries by host. */
function helperServerUrl(domain: string): string {
  return domain === "docker.io" ? "https://index.docker.io/v1/" : domain;
}

async function fromHelper(name: unknown, domain: string, where: string): Promise<Credentials | undefined> {
  if (typeof name !== "string" || name === "") throw new Error(`${where} must name a credential helper (a non-empty string)`);
  const { helperCredentials } = await import("./credential-helper.js");
  const got = await helperCredentials(name, helperServerUrl(domain), where);
  return got && { username: got.username, password: got.secret, source: `docker-credential-${name} (${where})` };
}

/** Credentials for a registry (as named in image refs: "docker.io", "ghcr.io", "host:5000"), if any. */
export async function credentialsFor(domain: string, file = dockerConfigFile()): Promise<Credentials | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    return undefined; // no config: anonymous
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file} is not valid JSON (${(e as Error).message})`);
  }
  const config = (json ?? {}) as { auths?: unknown; credHelpers?: unknown; credsStore?: unknown };
  const wanted = aliases(domain);
  if (config.credHelpers && typeof config.credHelpers === "object") {
    for (const [key, name] of Object.entries(config.credHelpers as Record<string, unknown>)) {
      if (wanted.includes(keyHost(key))) return fromHelper(name, domain, `credHelpers[${JSON.stringify(key)}] in ${file}`);
    }
  }
  if (config.credsStore !== undefined && config.credsStore !== "") {
    // The store has nothing for this registry: inline entries (from before the store) still count.
    const stored = await fromHelper(config.credsStore, domain, `credsStore in ${file}`);
    if (stored) return stored;
  }
  const auths = config.auths;
  if (!auths || typeof auths !== "object") return undefined;
  for (const [key, entry] of Object.entries(auths as Record<string, unknown>)) {
    if (!wanted.includes(keyHost(key)) || !entry || typeof entry !== "object") continue;
    const creds = decode(entry as Record<string, unknown>, file, key);
    if (creds) return creds;
  }
  return undefined;
}
