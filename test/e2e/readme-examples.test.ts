// Every TypeScript example in the README runs verbatim: each ```ts block that imports "matchlock"
// is type-checked and compiled by tsc in a scratch project that depends on this package, then
// run against the real engine.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { CLI, ROOT, setUpE2E } from "../helpers/e2e.js";
import { startServer, type Server } from "../helpers/resident.js";
import { defaultEngineSocket } from "../../src/sdk/index.js";

function examples(readme: string): Array<{ title: string; code: string }> {
  const out: Array<{ title: string; code: string }> = [];
  let title = "";
  const lines = readme.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.startsWith("#")) title = lines[i]!.replace(/^#+\s*/, "");
    if (lines[i] !== "```ts") continue;
    const end = lines.indexOf("```", i + 1);
    const code = lines.slice(i + 1, end).join("\n");
    if (code.includes('from "matchlock"')) out.push({ title, code });
    i = end;
  }
  return out;
}

function run(file: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [file], { env: { ...process.env, MATCHLOCK_BIN: CLI }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("README examples", async () => {
  const readme = await readFile(join(ROOT, "README.md"), "utf8");
  const blocks = examples(readme);
  let dir: string;
  let server: Server | undefined;
  before(async () => {
    await setUpE2E();
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
      throw new Error(`README examples do not compile:\n${err.stdout ?? String(err)}`);
    });
  });

  after(async () => {
    await server?.stop();
  });

  test("the README has runnable examples", () => {
    assert.ok(blocks.length >= 6, `found ${blocks.length}`);
  });

  const expected: Record<string, RegExp> = {
    "Quick start": /^hello from the sandbox\n/,
    "Builder and exec": /^vm-[0-9a-f]{8} 0 2\n\nSANDBOX_SECRET_[0-9a-f]{32}\n\n$/,
    Streaming: /^1\n2\n3\n0 \d+\n$/,
    Files: /^Hello, world!\nhello.txt 13 644 false\nscript.sh 18 755 false\n$/,
    Mounts: /^from-guest\n\n?$/,
    "Resident engine: `matchlock serve`": /^vm-[0-9a-f]{8} hello\n$/,
    "Lifecycle and errors": /^vm-[0-9a-f]{8}\n-32001 failed false true false \[-32001\] exec error: chdir \/nope: No such file or directory\n$/,
  };

  for (const [i, block] of blocks.entries()) {
    test(`"${block.title}" runs`, async () => {
      const r = await run(join(dir, `example-${i}.js`));
      assert.equal(r.code, 0, r.stderr);
      const want = expected[block.title];
      assert.ok(want, `no expected output for "${block.title}"`);
      assert.match(r.stdout, want);
    });
  }
});
