// Builds a throwaway executable that runs fake-engine.js, so tests can point
// Config.binaryPath (or MATCHLOCK_BIN) at it exactly as users point it at `matchlock`.
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ENGINE_JS = fileURLToPath(new URL("./fake-engine.js", import.meta.url));

export interface FakeBinary {
  /** Path of the executable wrapper. */
  bin: string;
  /** Request lines the engine received, parsed. */
  requests(): Array<Record<string, unknown>>;
  /** argv of every invocation (`["rpc"]`, `["rm", id]`, ...). */
  invocations(): string[][];
  /** pid of the last `rpc` engine process. */
  pid(): number;
  cleanup(): void;
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function readLines(file: string): string[] {
  return existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean) : [];
}

export function makeFakeBinary(extraEnv: Record<string, string> = {}): FakeBinary {
  const dir = mkdtempSync(path.join(tmpdir(), "matchlock-fake-"));
  const files = {
    FAKE_LOG: path.join(dir, "requests.log"),
    FAKE_PID_FILE: path.join(dir, "pid"),
    FAKE_ARGV_FILE: path.join(dir, "argv.log"),
  };
  const exports = Object.entries({ ...files, ...extraEnv }).map(([k, v]) => `export ${k}=${shellQuote(v)}`);
  const bin = path.join(dir, "matchlock");
  writeFileSync(bin, ["#!/bin/sh", ...exports, `exec ${shellQuote(process.execPath)} ${shellQuote(ENGINE_JS)} "$@"`, ""].join("\n"));
  chmodSync(bin, 0o755);
  return {
    bin,
    requests: () => readLines(files.FAKE_LOG).map((l) => JSON.parse(l) as Record<string, unknown>),
    invocations: () => readLines(files.FAKE_ARGV_FILE).map((l) => JSON.parse(l) as string[]),
    pid: () => Number(readFileSync(files.FAKE_PID_FILE, "utf8")),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** True while a process with this pid exists. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
