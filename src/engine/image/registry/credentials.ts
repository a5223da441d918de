// Registry credentials from the Docker CLI's config file ($DOCKER_CONFIG/config.json, else
// ~/.docker/config.json): its "auths" map, keyed by registry host (Docker Hub by its historic
// "https://index.docker.io/v1/" URL), each with "auth" = base64("user:password").
// Credential helpers (credsStore/credHelpers) are not run: they are programs of the user's.
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";

export interface Credentials {
  username: string;
  password: string;
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
    return { username: entry.username, password: entry.password };
  }
  if (typeof entry.auth !== "string" || entry.auth === "") return undefined;
  const plain = Buffer.from(entry.auth, "base64").toString("utf8");
  const colon = plain.indexOf(":");
  if (colon <= 0) throw new Error(`${file}: the "auth" of ${JSON.stringify(key)} is not base64 of "user:password"`);
  return { username: plain.slice(0, colon), password: plain.slice(colon + 1) };
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
  const auths = (json as { auths?: unknown } | null)?.auths;
  if (!auths || typeof auths !== "object") return undefined;
  const wanted = aliases(domain);
  for (const [key, entry] of Object.entries(auths as Record<string, unknown>)) {
    if (!wanted.includes(keyHost(key)) || !entry || typeof entry !== "object") continue;
    const creds = decode(entry as Record<string, unknown>, file, key);
    if (creds) return creds;
  }
  return undefined;
}
