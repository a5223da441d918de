// -e/--env and --env-file, as Docker reads them: KEY=VALUE sets a variable; a bare KEY takes the
// host's value (and is left out when the host has none); an env file holds one of those per line,
// with blank lines and lines starting with # skipped, and values taken as written (no quotes).
import { readFileSync } from "node:fs";

/** A variable name the guest's environment can hold (no '=', no NUL, no whitespace as Docker asks). */
const NAME = /^[^=\s\0]+$/;

function entry(spec: string, where: string, hostEnv: NodeJS.ProcessEnv): [string, string] | undefined {
  const eq = spec.indexOf("=");
  const name = eq === -1 ? spec : spec.slice(0, eq);
  if (!NAME.test(name)) throw new Error(`invalid environment variable ${JSON.stringify(spec)}${where}: use KEY=VALUE or KEY (KEY without '=', whitespace or NUL)`);
  if (eq === -1) {
    const value = hostEnv[name];
    return value === undefined ? undefined : [name, value];
  }
  const value = spec.slice(eq + 1);
  if (value.includes("\0")) throw new Error(`invalid environment variable ${name}${where}: its value contains a NUL byte`);
  return [name, value];
}

/** The variables of every --env-file (in order), then every -e (later wins); undefined when none were given. */
export function envOptions(specs: readonly string[], files: readonly string[], hostEnv: NodeJS.ProcessEnv = process.env): Record<string, string> | undefined {
  if (specs.length === 0 && files.length === 0) return undefined;
  const env: Record<string, string> = {};
  const put = (e: [string, string] | undefined) => {
    if (e) env[e[0]] = e[1];
  };
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      throw new Error(`cannot read env file ${file}: ${(err as Error).message}`);
    }
    text.split(/\r?\n/).forEach((line, i) => {
      const spec = line.replace(/^\s+/, "");
      if (spec === "" || spec.startsWith("#")) return;
      put(entry(spec, ` (${file} line ${i + 1})`, hostEnv));
    });
  }
  for (const spec of specs) put(entry(spec, "", hostEnv));
  return env;
}
