// The SDK's shared engines (`matchlock serve` processes the default Client starts) for tests:
// which run for a home, and SDK clients in processes of their own.
import { execFile, spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { pidAlive } from "../../src/engine/process-identity.js";
import { ROOT } from "./e2e.js";

const execFileP = promisify(execFile);

export interface SharedEngineProcess {
  pid: number;
  socket: string;
  /** The engine's entry point: which package copy (build) runs it. */
  entry: string;
}

/** The shared engines serving sockets under `<home>/run/`. */
export async function sharedEngines(home: string): Promise<SharedEngineProcess[]> {
  const { stdout } = await execFileP("ps", ["-eo", "pid=,args="]);
  const found: SharedEngineProcess[] = [];
  for (const line of stdout.split("\n")) {
    const m = /^\s*(\d+)\s+\S+ -- (\S+) serve --socket (\S+) --idle-exit/.exec(line);
    if (m && m[3]!.startsWith(join(home, "run", "shared-"))) found.push({ pid: Number(m[1]), entry: m[2]!, socket: m[3]! });
  }
  return found;
}

/** SIGTERMs the shared engines of these homes (the ones the tests started) and waits until they are gone. */
export async function stopSharedEngines(...homes: string[]): Promise<void> {
  for (const home of homes) {
    for (const { pid } of await sharedEngines(home)) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        continue; // already gone
      }
      while (pidAlive(pid)) await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * A script that makes a default `new Client()` of the SDK at `sdkDir` (a package root) and then,
 * by its argument: `start` (starts the client, prints "started", closes it) or `hold` (launches
 * the image in $IMAGE, prints the sandbox id and keeps the client open until killed).
 */
export async function clientScript(dir: string, sdkRoot = ROOT): Promise<string> {
  const sdk = pathToFileURL(join(sdkRoot, "dist", "src", "sdk", "index.js")).href;
  const file = join(dir, "shared-engine-client.mjs");
  await writeFile(file, `
const { Client, Sandbox } = await import(${JSON.stringify(sdk)});
const client = new Client();
if (process.argv[2] === "start") {
  await client.start();
  console.log("started");
  await client.close();
} else {
  console.log(await client.launch(new Sandbox(process.env.IMAGE)));
  setInterval(() => undefined, 60_000);
}
`);
  return file;
}

/** Runs a client script; `firstLine` is the first line it prints. */
export function runClient(script: string, mode: "start" | "hold", env: Record<string, string> = {}): { proc: ChildProcessWithoutNullStreams; firstLine: Promise<string>; exited: Promise<number | null> } {
  const proc = spawn(process.execPath, [script, mode], { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  let err = "";
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
  const firstLine = new Promise<string>((resolve, reject) => {
    proc.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("\n")) resolve(out.split("\n")[0]!);
    });
    proc.stderr.on("data", (d: Buffer) => (err += d.toString()));
    void exited.then((code) => reject(new Error(`the client script exited (${code}) before printing: ${err}`)));
  });
  firstLine.catch(() => undefined);
  return { proc, firstLine, exited };
}
