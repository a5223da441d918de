// Interception rules match URL paths with POSIX path globs as upstream's engine does (Go's
// path.Match): `*` is any run of characters but `/`, `?` one character but `/`, `[...]` a class
// (`[^...]` negated, ranges `a-z`), `\` escapes. Glob libraries for Node add braces, globstars
// and extglobs, which would make the same rule match other paths here than upstream; so the
// pattern is translated to one anchored regular expression, once, when the rule is compiled.

/** The matcher for `pattern`, or an Error saying why it is not a valid pattern. */
export function compilePathGlob(pattern: string): ((path: string) => boolean) | Error {
  let re = "^";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "\\") {
      if (i + 1 >= pattern.length) return new Error(`path pattern ${JSON.stringify(pattern)} ends with a lone backslash`);
      re += escape(pattern[++i]!);
    } else if (c === "[") {
      const end = classEnd(pattern, i);
      if (end < 0) return new Error(`path pattern ${JSON.stringify(pattern)} has an unclosed or empty [ class`);
      let body = pattern.slice(i + 1, end);
      const negated = body.startsWith("^");
      if (negated) body = body.slice(1);
      const parts = body.replace(/\\(.)/g, "$1").split("");
      re += `[${negated ? "^" : ""}${parts.map((p) => (p === "-" ? "-" : escape(p))).join("")}]`;
      i = end;
    } else re += escape(c);
  }
  let compiled: RegExp;
  try {
    compiled = new RegExp(re + "$", "s");
  } catch {
    return new Error(`path pattern ${JSON.stringify(pattern)} has an invalid character class`);
  }
  return (path) => compiled.test(path);
}

/** Index of the `]` closing the class opened at `start`, or -1 (unclosed, or no character in it). */
function classEnd(pattern: string, start: number): number {
  let i = start + 1;
  if (pattern[i] === "^") i++;
  const first = i;
  for (; i < pattern.length; i++) {
    if (pattern[i] === "\\") i++;
    else if (pattern[i] === "]") return i > first ? i : -1;
  }
  return -1;
}

function escape(c: string): string {
  return /[\\^$.*+?()[\]{}|/-]/.test(c) ? `\\${c}` : c;
}
