// Which engine the SDK runs, and with which argv (spec §1.1).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Config } from "./types.js";
import { settings } from "../settings/settings.js";

/**
 * The engine of this very package (dist/src/cli/main.js beside dist/src/sdk/): the one this SDK
 * was built and tested with, so it comes before anything the environment names.
 */
export const OWN_ENGINE = fileURLToPath(new URL("../cli/main.js", import.meta.url));

/**
 * The command that starts the engine, without its subcommand: Config.binaryPath, else this
 * package's own engine (run by this Node.js), else a non-empty MATCHLOCK_BIN, else `matchlock`
 * from $PATH. `ownEngine` is null when the package has no engine (an SDK copied alone).
 */
export function engineCommand(
  config: Config = {},
  env: NodeJS.ProcessEnv = process.env,
  ownEngine: string | null = existsSync(OWN_ENGINE) ? OWN_ENGINE : null,
): string[] {
  if (config.binaryPath) return [config.binaryPath];
  if (ownEngine) return [process.execPath, ownEngine];
  return [settings.bin.read(env)];
}

/** Config.engineSocket, else a non-empty MATCHLOCK_ENGINE_SOCKET: the resident engine to connect to. */
export function resolveEngineSocket(config: Config = {}, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (config.engineSocket) return config.engineSocket;
  return settings.engineSocket.read(env);
}

/** argv of the RPC engine: `[...engine, "rpc"]`, or `["sudo", ...engine, "rpc"]` with useSudo. */
export function rpcCommand(engine: readonly string[], useSudo = false): string[] {
  return useSudo ? ["sudo", ...engine, "rpc"] : [...engine, "rpc"];
}

/**
 * argv of `remove()`. Unlike the seed SDKs, through sudo when the engine runs through sudo: the
 * state lives in the engine's (root's) home, which the user's own `rm` cannot see or change.
 */
export function rmCommand(vmId: string, engine: readonly string[], useSudo = false): string[] {
  return useSudo ? ["sudo", ...engine, "rm", vmId] : [...engine, "rm", vmId];
}

/**
 * A Config with every default filled in, as upstream SDK's `defaultConfig` gives; a field given
 * (even "") is kept. Its binaryPath names the engine, so a Client made from it runs that engine
 * per client, as upstream's does (not the shared engine: sharedEngine is false unless given).
 */
export function defaultConfig(config: Config = {}, env: NodeJS.ProcessEnv = process.env): Required<Config> {
  const ownEngine = existsSync(OWN_ENGINE) ? OWN_ENGINE : null;
  const engineSocket = config.engineSocket ?? settings.engineSocket.read(env) ?? "";
  const binaryPath = config.binaryPath ?? ownEngine ?? settings.bin.read(env);
  const useSudo = config.useSudo ?? false;
  const sharedEngine = config.sharedEngine ?? false;
  return { binaryPath, useSudo, keepOnDispose: config.keepOnDispose ?? false, engineSocket, sharedEngine };
}
