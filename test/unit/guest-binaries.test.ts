// The guest binaries' manifest: what the build records, and each way a binary can fail the check
// every engine makes before it serves (a scratch package root, with stand-in binaries).
import assert from "node:assert/strict";
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { guestBinariesProblem, writeGuestManifest } from "../../src/cli/guest-binaries.js";
import { packageVersion } from "../../src/protocol/handshake.js";

describe("guest binaries manifest", () => {
  let root: string;
  const manifest = () => join(root, "guest", "manifest.json");

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "matchlock-guest-"));
    for (const [dir, source, binary] of [["agent", "agent.c", "matchlock-agent"], ["microvm", "init.c", "matchlock-init"]]) {
      await mkdir(join(root, "guest", dir!, "build"), { recursive: true });
      await writeFile(join(root, "guest", dir!, source!), `/* ${source} */\n`);
      await writeFile(join(root, "guest", dir!, "Makefile"), "all:\n");
      await writeFile(join(root, "guest", dir!, "build", binary!), `binary ${binary}\n`);
    }
    await writeGuestManifest(root);
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it("accepts what the build recorded, for this package version", async () => {
    assert.equal(await guestBinariesProblem(root), undefined);
    assert.equal(JSON.parse(await readFile(manifest(), "utf8")).version, packageVersion());
  });

  it("refuses a binary changed after the build, naming it", async () => {
    await appendFile(join(root, "guest", "microvm", "build", "matchlock-init"), "x");
    assert.match(await guestBinariesProblem(root) ?? "", /guest binary \S+matchlock-init is not the one this package's build made/);
  });

  it("refuses a stale build: sources changed since, or another package version", async () => {
    await appendFile(join(root, "guest", "agent", "agent.c"), "int changed;\n");
    assert.match(await guestBinariesProblem(root) ?? "", /matchlock-agent is stale: its sources in guest\/agent changed since it was built; run "npm run build"/);
    await writeGuestManifest(root);
    const recorded = JSON.parse(await readFile(manifest(), "utf8"));
    await writeFile(manifest(), JSON.stringify({ ...recorded, version: "0.0.0-old" }));
    assert.match(await guestBinariesProblem(root) ?? "", new RegExp(`built for matchlock 0\\.0\\.0-old, but this engine is ${packageVersion().replace(/\./g, "\\.")} \\(a stale build\\)`));
  });

  it("refuses binaries of another architecture, and a missing manifest or binary", async () => {
    const recorded = JSON.parse(await readFile(manifest(), "utf8"));
    await writeFile(manifest(), JSON.stringify({ ...recorded, arch: "riscv64" }));
    assert.match(await guestBinariesProblem(root) ?? "", /built for riscv64, but this host is/);
    await writeFile(manifest(), JSON.stringify(recorded));
    await rm(join(root, "guest", "agent", "build", "matchlock-agent"));
    assert.match(await guestBinariesProblem(root) ?? "", /matchlock-agent is missing: reinstall the package/);
    await rm(manifest());
    assert.match(await guestBinariesProblem(root) ?? "", /manifest \S+ is missing or unreadable/);
  });
});
