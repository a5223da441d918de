// The documentation holds together: every relative link in README.md and docs/*.md reaches an
// existing file (and heading), and every MATCHLOCK_* variable the code reads is documented.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { test } from "node:test";
import { documents, proseLines } from "../helpers/docs.js";
import { ROOT } from "../helpers/e2e.js";

/** The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to '-', repeats numbered. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of proseLines(text)) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const base = heading[1]!.toLowerCase().replace(/[^\p{L}\p{N}\p{M}\p{Pc}\- ]/gu, "").replace(/ /g, "-");
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Link targets in the prose (not in code blocks or code spans) of a page. */
function linkTargets(text: string): string[] {
  return proseLines(text)
    .map((line) => line.replace(/`[^`]*`/g, ""))
    .flatMap((line) => [...line.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!));
}

test("every relative link in README.md and docs/ points to an existing file and heading", async () => {
  const docs = await documents();
  const broken: string[] = [];
  for (const { file, text } of docs) {
    for (const target of linkTargets(text)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto: ...: not ours to check
      const [path, anchor] = target.split("#", 2) as [string, string | undefined];
      const resolved = path === "" ? join(ROOT, file) : join(ROOT, dirname(file), decodeURIComponent(path));
      const where = `${file}: (${target})`;
      if (!resolved.startsWith(ROOT + "/") || !existsSync(resolved)) broken.push(`${where}: no file ${relative(ROOT, resolved)}`);
      else if (anchor !== undefined) {
        if (!resolved.endsWith(".md")) broken.push(`${where}: an anchor into a file that is not Markdown`);
        else if (!anchors(await readFile(resolved, "utf8")).has(anchor)) broken.push(`${where}: no heading #${anchor}`);
      }
    }
  }
  assert.deepEqual(broken, []);
  assert.ok(docs.some(({ text }) => linkTargets(text).length > 0), "no links found at all: the link reader is broken");
});

test("README.md links every docs/ page", async () => {
  const docs = await documents();
  const readme = docs.find((d) => d.file === "README.md")!;
  const linked = new Set(linkTargets(readme.text).map((t) => t.split("#")[0]));
  assert.deepEqual(docs.map((d) => d.file).filter((f) => f.startsWith("docs/") && !linked.has(f)), []);
});

test("every MATCHLOCK_* variable read in src/ is in docs/configuration.md", async () => {
  const names = new Set<string>();
  for (const entry of await readdir(join(ROOT, "src"), { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith(".ts")) continue;
    const source = await readFile(join(entry.parentPath, entry.name), "utf8");
    for (const m of source.matchAll(/\bMATCHLOCK_[A-Z0-9_]+/g)) names.add(m[0]);
  }
  assert.ok(names.size > 10, `found only ${names.size} variables: the scan is broken`);
  const configuration = await readFile(join(ROOT, "docs", "configuration.md"), "utf8");
  assert.deepEqual([...names].filter((n) => !configuration.includes(`\`${n}\``)).sort(), []);
});

test("the heading anchors follow GitHub's rule", () => {
  const got = anchors("# Resident engine: `matchlock serve`\n## Cold start (gVisor)\n```\n# not a heading\n```\n## Cold start (gVisor)\n### Micro-VM start (TCG)\n");
  assert.deepEqual([...got], ["resident-engine-matchlock-serve", "cold-start-gvisor", "cold-start-gvisor-1", "micro-vm-start-tcg"]);
});
