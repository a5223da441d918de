// Waiting for a user's hook for at most some time: the wait ends, the hook itself goes on (a
// promise cannot be cancelled), as upstream's SDK times its hooks.

/** `p`, or `timedOut()` as a rejection once `ms` passed (ms <= 0: no limit). */
export function waitAtMost<T>(p: Promise<T>, ms: number, timedOut: () => Error): Promise<T> {
  if (ms <= 0) return p;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(timedOut()), ms)));
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
