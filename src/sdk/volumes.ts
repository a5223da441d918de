// Named volumes through the engine's CLI (`volume create|ls|rm --json`), as upstream's SDKs do:
// there is no RPC for them. Run without sudo: a volume is a file of the caller's own.
import { MatchlockError } from "./errors.js";
import { runCommand } from "./run-command.js";
import type { VolumeInfo } from "./types.js";

async function volumeCli(engine: readonly string[], words: string[], what: string): Promise<string> {
  const argv = [...engine, "volume", ...words];
  let result;
  try {
    result = await runCommand(argv);
  } catch (err) {
    throw new MatchlockError(`matchlock ${what}: cannot run ${argv.join(" ")}: ${(err as Error).message}`, { cause: err });
  }
  if (result.code !== 0) {
    const cause = result.stderr.trim().replace(/^Error: /, "") || (result.signal ? `killed by ${result.signal}` : `exit code ${result.code}`);
    throw new MatchlockError(`matchlock ${what}: ${cause}`);
  }
  return result.stdout;
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new MatchlockError(`matchlock ${what}: the engine printed no JSON: ${JSON.stringify(text.slice(0, 200))}`);
  }
}

function checkName(name: unknown): string {
  const trimmed = typeof name === "string" ? name.trim() : "";
  if (!trimmed) throw new MatchlockError("volume name is required", { kind: "invalid_argument" });
  return trimmed;
}

export async function volumeCreate(engine: readonly string[], name: string, sizeMb: number): Promise<VolumeInfo> {
  const n = checkName(name);
  if (typeof sizeMb !== "number" || !Number.isFinite(sizeMb) || sizeMb <= 0) throw new MatchlockError("volume size must be > 0", { kind: "invalid_argument" });
  const what = `volume create ${n}`;
  const out = parseJson(await volumeCli(engine, ["create", n, "--size", String(sizeMb), "--json"], what), what) as Partial<VolumeInfo> | null;
  const path = typeof out?.path === "string" ? out.path.trim() : "";
  if (!path) throw new MatchlockError(`matchlock ${what}: the engine's answer has no path`);
  return {
    name: typeof out?.name === "string" && out.name.trim() ? out.name.trim() : n,
    size: typeof out?.size === "string" && out.size.trim() ? out.size.trim() : `${sizeMb.toFixed(1)} MB`,
    path,
  };
}

export async function volumeList(engine: readonly string[]): Promise<VolumeInfo[]> {
  const what = "volume ls";
  const out = parseJson(await volumeCli(engine, ["ls", "--json"], what), what);
  if (!Array.isArray(out)) throw new MatchlockError(`matchlock ${what}: the engine's answer is not a list`);
  return out.map((v: Partial<VolumeInfo> | null) => {
    const name = typeof v?.name === "string" ? v.name.trim() : "";
    const path = typeof v?.path === "string" ? v.path.trim() : "";
    if (!name || !path) throw new MatchlockError(`matchlock ${what}: an entry has no name or path: ${JSON.stringify(v)}`);
    return { name, size: typeof v?.size === "string" ? v.size : "", path };
  });
}

export async function volumeRemove(engine: readonly string[], name: string): Promise<void> {
  const n = checkName(name);
  await volumeCli(engine, ["rm", n], `volume rm ${n}`);
}
