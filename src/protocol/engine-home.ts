// Where the engine keeps its state and where a resident engine listens by default: the SDK
// finds `matchlock serve` where the engine put it, so both halves take these from here.
import { homedir } from "node:os";
import { join } from "node:path";
import { settings } from "../settings/settings.js";

/** Root of all engine state: a non-empty $MATCHLOCK_HOME, else ~/.matchlock. */
export function matchlockHome(env: NodeJS.ProcessEnv = process.env): string {
  return settings.home.read(env) || join(homedir(), ".matchlock");
}

/** Where `matchlock serve` listens by default when run as this user (the directory is owner-only). */
export function defaultEngineSocket(env: NodeJS.ProcessEnv = process.env): string {
  return join(matchlockHome(env), "run", "engine.sock");
}
