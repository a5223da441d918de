// End to end, as a user gets matchlock: this tree packed by `npm pack`, installed from the
// tarball into a fresh project (its dependencies come from the npm registry), with a foreign
// `matchlock` first on PATH and in MATCHLOCK_BIN that fails loudly if anything runs it. Then the
// README's "Use it in your project" commands: `npx matchlock setup` (idempotent: this machine has
// everything already) and the quick start as plain `node app.mjs`, verbatim from the README.
//
// The tree is packed with --ignore-scripts: `npm test` built it just before (prepack would only
// rebuild the dist/ these tests run from). The README's image is pulled from Docker Hub in a
// user's project; here a stand-in (the busybox test image) is imported under its name, and pulls
// stay off.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { appendFile, chmod, copyFile, mkdir, mkdtemp, readFile, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { BACKEND, ROOT, TARBALLS, cli, setUpE2E } from "../helpers/e2e.js";
import { stopSharedEngines } from "../helpers/shared-engine.js";

interface Ran { code: number | null; stdout: string; stderr: string }

function run(argv: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0]!, argv.slice(1), { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => (stdout += d));
    p.stderr.on("data", (d: Buffer) => (stderr += d));
    p.once("error", reject);
    p.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** The first ```LANG block after the README heading `title`. */
function block(readme: string, title: string, lang: string): string {
  const section = readme.slice(readme.indexOf(`\n## ${title}\n`));
  assert.ok(section.length > 0, `README has no "## ${title}" section`);
  const start = section.indexOf("```" + lang + "\n") + lang.length + 4;
  return section.slice(start, section.indexOf("\n```", start) + 1);
}

describe("the npm package, installed into a project", () => {
  let project: string;
  let tarball: string;
  let env: NodeJS.ProcessEnv;
  let foreignMarker: string;
  let commands: string[];

  let home: string;

  before(async () => {
    home = await setUpE2E();
    // A private image store: the stand-in for the README's image is named like a real one.
    process.env.MATCHLOCK_IMAGES = join(home, "images");
    const imported = await cli(["image", "import", "alpine:latest", join(TARBALLS, "busybox.tar")]);
    assert.equal(imported.code, 0, imported.stderr);

    const work = await mkdtemp(join(tmpdir(), "matchlock-package-"));
    const packed = await run(["npm", "pack", "--ignore-scripts", "--silent", "--pack-destination", work], { cwd: ROOT });
    assert.equal(packed.code, 0, packed.stderr);
    tarball = join(work, packed.stdout.trim().split("\n").pop()!);

    project = join(work, "project");
    await mkdir(join(project, "foreign-bin"), { recursive: true });
    await writeFile(join(project, "package.json"), JSON.stringify({ name: "user-project", private: true }));
    foreignMarker = join(work, "foreign-matchlock-ran");
    const foreign = join(project, "foreign-bin", "matchlock");
    await writeFile(foreign, `#!/bin/sh\necho "$*" >> '${foreignMarker}'\necho "a foreign matchlock ran: $*" >&2\nexit 99\n`);
    await chmod(foreign, 0o755);
    env = { ...process.env, PATH: `${join(project, "foreign-bin")}:${process.env.PATH}`, MATCHLOCK_BIN: foreign };

    const readme = await readFile(join(ROOT, "README.md"), "utf8");
    commands = block(readme, "Use it in your project", "sh").split("\n").map((l) => l.replace(/#.*/, "").trim()).filter(Boolean);
    await writeFile(join(project, "app.mjs"), block(readme, "Use it in your project", "js"));
  });

  after(async () => {
    await stopSharedEngines(home); // the examples' default clients started one
    assert.equal(existsSync(foreignMarker), false, "the foreign matchlock on PATH / in MATCHLOCK_BIN must never run");
  });

  test("the README's commands are the three a user types", () => {
    assert.deepEqual(commands, ["npm i matchlock", "npx matchlock setup", "node app.mjs"]);
  });

  test("the tarball carries the engine and its guest binaries, and no tests, benches or sources", async (t) => {
    const listed = await run(["tar", "tzf", tarball], { cwd: project });
    const files = listed.stdout.split("\n").filter(Boolean);
    for (const f of ["dist/src/sdk/index.js", "dist/src/sdk/index.d.ts", "dist/src/cli/main.js", "dist/bundle/rpc/rpc.js",
      "guest/agent/build/matchlock-agent", "guest/microvm/build/matchlock-init", "guest/manifest.json",
      "scripts/apt-ensure.sh", "scripts/fetch-guest-kernel.sh", "scripts/fetch-runsc.sh"]) {
      assert.ok(files.includes(`package/${f}`), `${f} is in the tarball`);
    }
    const unwanted = files.filter((f) => /^package\/(src|test|bench|examples|dist\/(test|bench|examples))\//.test(f) || f.endsWith(".map"));
    assert.deepEqual(unwanted, []);
    t.diagnostic(`tarball: ${((await stat(tarball)).size / 1024).toFixed(0)} KiB, ${files.length} files`);
  });

  test("npm i of the tarball installs it, with its dependencies", async (t) => {
    const started = Date.now();
    const installed = await run(["npm", "install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error", tarball], { cwd: project, env });
    assert.equal(installed.code, 0, installed.stderr);
    t.diagnostic(`npm install: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    // CommonJS projects load it too (require of the ES module, on the Node versions it supports).
    await writeFile(join(project, "cjs.cjs"), 'const { Client, Sandbox } = require("matchlock");\nconsole.log(typeof Client, typeof Sandbox);\n');
    const cjs = await run([process.execPath, "cjs.cjs"], { cwd: project, env });
    assert.equal(cjs.code, 0, cjs.stderr);
    assert.equal(cjs.stdout, "function function\n");
  });

  test("npx matchlock setup is idempotent here and ends ready", async () => {
    const setup = await run(["sh", "-c", commands[1]!], { cwd: project, env });
    assert.equal(setup.code, 0, setup.stdout + setup.stderr);
    assert.match(setup.stdout, /^==> Debian packages: .*\n {4}all installed$/m, "nothing to install on a prepared machine");
    assert.match(setup.stdout, /^guest kernel: .* \(cached\)$/m);
    assert.match(setup.stdout, /^runsc: runsc version \S+ \(cached\)$/m);
    assert.match(setup.stdout, /^ready: /m);
  });

  test(`the quick start runs as plain node (${BACKEND}) and leaves no record behind`, async () => {
    const quick = await run(["sh", "-c", commands[2]!], { cwd: project, env });
    assert.equal(quick.code, 0, quick.stderr);
    assert.equal(quick.stdout, "hello from the sandbox\n\n");
    const list = await run(["npx", "matchlock", "list", "--json"], { cwd: project, env });
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(JSON.parse(list.stdout), []);
  });

  test("execStream gives a Writable the exact bytes; disposal removes the sandbox it made", async () => {
    await writeFile(join(project, "bytes.mjs"), [
      'import { Writable } from "node:stream";',
      'import { Client, Sandbox } from "matchlock";',
      "const client = new Client();",
      "const chunks = [];",
      'const id = await client.launch(new Sandbox("alpine:latest"));',
      "await client.execStream(\"printf '\\\\377\\\\376\\\\000\\\\200'\", { stdout: new Writable({ write(c, _e, done) { chunks.push(c); done(); } }) });",
      "await client[Symbol.asyncDispose]();",
      'console.log(JSON.stringify({ id, hex: Buffer.concat(chunks).toString("hex") }));',
      "",
    ].join("\n"));
    const ran = await run([process.execPath, "bytes.mjs"], { cwd: project, env });
    assert.equal(ran.code, 0, ran.stderr);
    const { id, hex } = JSON.parse(ran.stdout) as { id: string; hex: string };
    assert.equal(hex, "fffe0080");
    const get = await run(["npx", "matchlock", "get", id], { cwd: project, env });
    assert.notEqual(get.code, 0, `the record of ${id} is gone: ${get.stdout}`);
  });

  test("a guest binary that is not the package's own is refused at engine start, with the engine's reason", async () => {
    const agent = join(project, "node_modules", "matchlock", "guest", "agent", "build", "matchlock-agent");
    const saved = `${agent}.saved`;
    await copyFile(agent, saved);
    try {
      await appendFile(agent, "\0");
      const ran = await run([process.execPath, "app.mjs"], { cwd: project, env });
      assert.notEqual(ran.code, 0);
      assert.match(ran.stderr, /\(exit code 1\): matchlock: cannot serve: the guest binary \S+matchlock-agent is not the one this package's build made/);
      assert.doesNotMatch(ran.stderr, /EPIPE/);
    } finally {
      await copyFile(saved, agent);
    }
  });
});
