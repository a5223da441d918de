// Every MATCHLOCK_* variable is read by src/settings/settings.ts and listed in its table: no other
// source file reads one from the environment, and every one the sources name is in the table.
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { settings, settingsTable } from "../../src/settings/settings.js";

const SRC = fileURLToPath(new URL("../../../src/", import.meta.url));

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await sources(path)));
    else if (e.name.endsWith(".ts")) out.push(path);
  }
  return out;
}

describe("settings", () => {
  test("only the settings module reads MATCHLOCK_* variables, and it lists every one the sources name", async () => {
    const listed = new Set(settingsTable.map((s) => s.name));
    const named = new Set<string>();
    for (const file of await sources(SRC)) {
      const text = await readFile(file, "utf8");
      if (!file.endsWith(join("settings", "settings.ts"))) {
        assert.doesNotMatch(text, /env(\.|\[["'`])MATCHLOCK_/, `${file} reads a MATCHLOCK_* variable itself`);
      }
      for (const m of text.matchAll(/\bMATCHLOCK_[A-Z_]+[A-Z]\b/g)) named.add(m[0]);
    }
    assert.deepEqual([...named].filter((n) => !listed.has(n)), [], "named in the sources but not in the settings table");
    assert.ok(listed.size >= 19);
    for (const s of settingsTable) assert.ok(s.meaning.length > 0 && s.default.length > 0, `${s.name} has a meaning and a default`);
  });

  test("docs/configuration.md lists every setting", async () => {
    const doc = await readFile(join(SRC, "..", "docs", "configuration.md"), "utf8");
    assert.deepEqual(settingsTable.map((s) => s.name).filter((n) => !doc.includes(`| \`${n}\` |`)), []);
  });

  test("an empty value counts as unset; values are read at each call", () => {
    assert.equal(settings.qemu.read({}), "qemu-system-x86_64");
    assert.equal(settings.qemu.read({ MATCHLOCK_QEMU: "" }), "qemu-system-x86_64");
    assert.equal(settings.qemu.read({ MATCHLOCK_QEMU: "/opt/qemu" }), "/opt/qemu");
    assert.equal(settings.runsc.read({ MATCHLOCK_RUNSC: "" }), undefined);
    assert.equal(settings.runsc.read({ MATCHLOCK_RUNSC: "/opt/runsc" }), "/opt/runsc");
    assert.equal(settings.registryCa.read({ MATCHLOCK_REGISTRY_CA: "" }), undefined);
  });
});
