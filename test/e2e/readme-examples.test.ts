// Every TypeScript example in README.md and docs/*.md runs verbatim: each ```ts block imports
// "matchlock" and is type-checked and compiled by tsc in a scratch project that depends on this
// package, then run against the real engine and its output matched.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { documents } from "../helpers/docs.js";
import { CLI, ROOT, setUpE2E } from "../helpers/e2e.js";
import { startNetLab, type NetLab } from "../helpers/net-lab.js";
import { startServer, type Server } from "../helpers/resident.js";
import { stopSharedEngines } from "../helpers/shared-engine.js";
import { defaultEngineSocket } from "../../src/sdk/index.js";

interface Example {
  /** "README.md: Quick start": the file and the heading the block sits under. */
  name: string;
  code: string;
}

/** The ```ts blocks of a page, each named by the heading it sits under. */
function examples(file: string, text: string): Example[] {
  const out: Example[] = [];
  let title = "";
  let block: { lang: string; lines: string[] } | undefined;
  for (const line of text.split("\n")) {
    if (block) {
      if (line !== "```") block.lines.push(line);
      else {
        if (block.lang === "ts") out.push({ name: `${file}: ${title}`, code: block.lines.join("\n") });
        block = undefined;
      }
      continue;
    }
    const fence = /^```(\S*)$/.exec(line);
    if (fence) block = { lang: fence[1]!, lines: [] };
    else if (line.startsWith("#")) title = line.replace(/^#+\s*/, "");
  }
  return out;
}

function run(file: string, cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // In the scratch project: examples that make files of their own make them there.
    const p = spawn(process.execPath, [file], { cwd, env: { ...process.env, MATCHLOCK_BIN: CLI }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("README and docs examples", async () => {
  const all = (await documents()).flatMap(({ file, text }) => examples(file, text));
  // Only a block that uses the SDK can run; the first test below fails on any other.
  const blocks = all.filter((b) => b.code.includes('from "matchlock"'));
  let dir: string;
  let server: Server | undefined;
  let lab: NetLab | undefined;
  let home: string | undefined;
  before(async () => {
    home = await setUpE2E();
    // The host names examples reach resolve to a test server on this machine ($MATCHLOCK_TEST_HOSTS),
    // at addresses outside the private ranges, so the examples need no allowPrivateIPs().
    lab = await startNetLab({ publicRange: true, names: ["api.example.com"] });
    // The resident-engine example connects to `matchlock serve` at its default place.
    server = await startServer(defaultEngineSocket());
    // A user's project: "matchlock" installed (linked) in node_modules, strict TypeScript.
    dir = await mkdtemp(join(tmpdir(), "matchlock-readme-"));
    await mkdir(join(dir, "node_modules", "@types"), { recursive: true });
    await symlink(ROOT, join(dir, "node_modules", "matchlock"));
    await symlink(join(ROOT, "node_modules", "@types", "node"), join(dir, "node_modules", "@types", "node"));
    await writeFile(join(dir, "package.json"), JSON.stringify({ type: "module" }));
    await writeFile(join(dir, "tsconfig.json"), JSON.stringify({
      compilerOptions: { target: "ES2022", lib: ["ES2022", "ESNext.Disposable"], module: "NodeNext", moduleResolution: "NodeNext", strict: true, types: ["node"], skipLibCheck: true },
    }));
    for (const [i, block] of blocks.entries()) await writeFile(join(dir, `example-${i}.ts`), block.code);
    await promisify(execFile)(join(ROOT, "node_modules", ".bin", "tsc"), ["-p", dir]).catch((err: { stdout?: string }) => {
      throw new Error(`README/docs examples do not compile:\n${err.stdout ?? String(err)}`);
    });
  });

  after(async () => {
    await server?.stop();
    await lab?.stop();
    // The examples' default clients share an engine: it would otherwise stay until idle.
    if (home) await stopSharedEngines(home);
  });

  const expected: Record<string, RegExp> = {
    "README.md: Quick start": /^hello from the sandbox\n/,
    "README.md: Builder and exec": /^vm-[0-9a-f]{8} 0 2\n\nSANDBOX_SECRET_[0-9a-f]{32}\n\n$/,
    "README.md: Streaming": /^1\n2\n3\n0 \d+\n$/,
    "README.md: Files": /^Hello, world!\nhello.txt 13 644 false\nscript.sh 18 755 false\n$/,
    "README.md: Large files": /^8388608 16777216\n$/,
    "README.md: Mounts": /^from-guest\n\n?$/,
    "README.md: Lifecycle and errors": /^vm-[0-9a-f]{8}\n-32001 failed false true false \[-32001\] exec error: chdir \/nope: No such file or directory\n$/,
    "docs/resident-engine.md: Resident engine: `matchlock serve`": /^vm-[0-9a-f]{8} hello\n$/,
    "docs/resident-engine.md: The shared engine (the default)": /^true shared\nown\n$/,
    "docs/network-seal.md: Interception rules and hooks": /^200 callback None \{"msg":"from-callback"\}\n403 None None Blocked by policy\n$/,
    "docs/cli.md: From the SDK": /^true\n$/,
    "docs/network-seal.md: Runtime allow-list and the guest's names":
      /^URLError\n\{"added":\["api\.example\.com"\],"allowedHosts":\["api\.example\.com"\]\}\n200\n\{"removed":\["api\.example\.com"\],"allowedHosts":\[\]\}\nworker-1\n10\.0\.0\.5\s+db\.internal\n$/,
    "docs/processes.md: Stdin: `execPipe`": /^HELLO WORLD 0\n$/,
    "docs/processes.md: Terminals: `execInteractive`": /^\/dev\/pts\/\d+\r\n30 100\r\n0\n$/,
    "docs/processes.md: Process handles: `spawn`": /^a b c 0 true\ntrue 143\n$/,
    "docs/port-forwarding.md: Port forwarding": /^127\.0\.0\.1:18080 -> sandbox:8080\nhello through the forward\n\n$/,
    "docs/volumes.md: Volumes and extra disks": /^notes 64\.0 MB\nkept across sandboxes\n$/,
    "docs/files.md: Remove, make, rename, stat": /^app\.py 12 false 644 true\ntrue \[-32002\] stat \/workspace\/project: No such file or directory\n$/,
    "docs/files.md: Watching and blocking file operations": /^true \[-32002\] open \/workspace\/prod\.env: Operation not permitted\n1 sh: can't create \/workspace\/dev\.env: Operation not permitted\n\/workspace\/app\.py \/workspace\/prod\.env \/workspace\/dev\.env\n$/,
  };

  test("every example runs, and every expected output has its example", () => {
    // A fragment would go stale unnoticed: every ```ts block is a whole program that runs.
    const notRunnable = all.filter((b) => !blocks.includes(b)).map((b) => b.name);
    assert.deepEqual(notRunnable, [], "these ```ts blocks do not import \"matchlock\", so they cannot run");
    const names = blocks.map((b) => b.name);
    assert.deepEqual(names.filter((n, i) => names.indexOf(n) !== i), [], "two examples under one heading cannot be told apart");
    assert.deepEqual(Object.keys(expected).filter((n) => !names.includes(n)), [], "expected outputs whose example is gone");
  });

  for (const [i, block] of blocks.entries()) {
    test(`"${block.name}" runs`, async () => {
      const r = await run(join(dir, `example-${i}.js`), dir);
      assert.equal(r.code, 0, r.stderr);
      const want = expected[block.name];
      assert.ok(want, `no expected output for "${block.name}"`);
      assert.match(r.stdout, want);
    });
  }
});
