// Small waiting and lookup helpers shared by the backends.
import { access, constants, readFile } from "node:fs/promises";
import { delimiter, join } from "node:path";

/** True when `p` settles within `ms`, false when the time ran out first. */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), ms); });
  const done = await Promise.race([p.then(() => true as const, () => true as const), timeout]);
  clearTimeout(timer);
  return done;
}

/** `p`, or a rejection as soon as `signal` aborts (with its reason). */
export function unlessAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

export async function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(message)), ms); });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The last lines of a log file, for error messages; "" when there is none. */
export async function logTail(file: string, lines = 10): Promise<string> {
  try {
    const text = await readFile(file, "utf8");
    return text.split("\n").filter(Boolean).slice(-lines).join("\n");
  } catch {
    return "";
  }
}

/** The executable `bin` resolves to (on PATH unless it contains a "/"), or undefined. */
export async function findOnPath(bin: string): Promise<string | undefined> {
  const candidates = bin.includes("/") ? [bin] : (process.env.PATH ?? "").split(delimiter).map((d) => join(d, bin));
  for (const c of candidates) {
    try {
      await access(c, constants.X_OK);
      return c;
    } catch {
      // keep looking
    }
  }
  return undefined;
}
