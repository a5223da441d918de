// The user-facing documentation: README.md and every docs/*.md page, as tests read them.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { ROOT } from "./e2e.js";

export interface Document {
  /** Path from the repository's root, e.g. "docs/engines.md". */
  file: string;
  text: string;
}

export async function documents(): Promise<Document[]> {
  const pages = (await readdir(join(ROOT, "docs"))).filter((f) => f.endsWith(".md")).sort().map((f) => `docs/${f}`);
  return Promise.all(["README.md", ...pages].map(async (file) => ({ file, text: await readFile(join(ROOT, file), "utf8") })));
}

/** The text outside fenced code blocks, line by line (a fence's lines become empty). */
export function proseLines(text: string): string[] {
  let fenced = false;
  return text.split("\n").map((line) => {
    if (/^\s*```/.test(line)) {
      fenced = !fenced;
      return "";
    }
    return fenced ? "" : line;
  });
}
