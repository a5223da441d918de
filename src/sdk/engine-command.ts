// Which binary the SDK runs, and with which argv (spec §1.1).
import type { Config } from "./types.js";
import { settings } from "../settings/settings.js";

/** Config.binaryPath, else a non-empty MATCHLOCK_BIN, else `matchlock` from $PATH. */
export function resolveBinary(config: Config = {}, env: NodeJS.ProcessEnv = process.env): string {
  if (config.binaryPath) return config.binaryPath;
  return settings.bin.read(env);
}

/** Config.engineSocket, else a non-empty MATCHLOCK_ENGINE_SOCKET: the resident engine to connect to. */
export function resolveEngineSocket(config: Config = {}, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (config.engineSocket) return config.engineSocket;
  return settings.engineSocket.read(env);
}

/** argv of the RPC engine: `[bin, "rpc"]`, or `["sudo", bin, "rpc"]` with useSudo. */
export function rpcCommand(config: Config = {}, env: NodeJS.ProcessEnv = process.env): string[] {
  const bin = resolveBinary(config, env);
  return config.useSudo ? ["sudo", bin, "rpc"] : [bin, "rpc"];
}

/**
 * argv of `remove()`. Unlike the seed SDKs, through sudo when the engine runs through sudo: the
 * state lives in the engine's (root's) home, which the user's own `rm` cannot see or change.
 */
export function rmCommand(vmId: string, config: Config = {}, env: NodeJS.ProcessEnv = process.env): string[] {
  const bin = resolveBinary(config, env);
  return config.useSudo ? ["sudo", bin, "rm", vmId] : [bin, "rm", vmId];
}
