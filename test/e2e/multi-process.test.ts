// End to end: several OS processes, each with its own Clients, create and use sandboxes at the
// same time; every sandbox sees only its own files and output.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { BACKEND, BUSYBOX, CLI, ROOT, eventually, leftovers, setUpE2E } from "../helpers/e2e.js";

const PROCESSES = 4;
// Twenty on gVisor; under TCG emulation each micro-VM boot takes a core for seconds, so four.
const PER_PROCESS = BACKEND === "microvm" ? 1 : 5;

/** One user program: makes its sandboxes, writes a unique file in each, reads everything back. */
function userScript(tag: string): string {
  return `
    import { Client, Sandbox } from ${JSON.stringify(join(ROOT, "dist/src/sdk/index.js"))};
    const clients = Array.from({ length: ${PER_PROCESS} }, () => new Client({ binaryPath: ${JSON.stringify(CLI)} }));
    const report = [];
    try {
      const ids = await Promise.all(clients.map((c) => c.launch(new Sandbox(${JSON.stringify(BUSYBOX)}).withMemory(128))));
      await Promise.all(clients.map(async (c, i) => {
        const token = ${JSON.stringify(tag)} + "-" + i + "-" + ids[i];
        await c.writeFile("/workspace/token", token);
        const run = await c.exec("cat /workspace/token; echo; hostname; ls /workspace");
        const file = (await c.readFile("/workspace/token")).toString();
        report.push({ id: ids[i], token, stdout: run.stdout, file });
      }));
    } finally {
      await Promise.all(clients.map(async (c) => { await c.close(); await c.remove(); }));
    }
    process.stdout.write(JSON.stringify(report));`;
}

function runUser(tag: string): Promise<Array<{ id: string; token: string; stdout: string; file: string }>> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ["--input-type=module", "-e", userScript(tag)], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    p.on("close", (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`user ${tag} exited ${code}: ${err}`))));
  });
}

describe("multi-process concurrency", () => {
  let home: string;
  before(async () => {
    home = await setUpE2E();
  });

  test(`${PROCESSES} processes x ${PER_PROCESS} sandboxes at once: no crosstalk of output or files`, { timeout: 15 * 60_000 }, async (t) => {
    const started = Date.now();
    const reports = await Promise.all(Array.from({ length: PROCESSES }, (_, i) => runUser(`proc${i}`)));
    const all = reports.flat();
    assert.equal(all.length, PROCESSES * PER_PROCESS);
    assert.equal(new Set(all.map((r) => r.id)).size, all.length, "every sandbox has its own id");
    for (const r of all) {
      assert.equal(r.stdout, `${r.token}\n${r.id}\ntoken\n`, `crosstalk in ${r.id}`);
      assert.equal(r.file, r.token);
    }
    for (const r of all) assert.deepEqual(await eventually(() => leftovers(r.id, home)), [], r.id);
    t.diagnostic(`${all.length} sandboxes from ${PROCESSES} processes in ${((Date.now() - started) / 1000).toFixed(1)} s, 0 crosstalk, 0 leftovers`);
  });
});
