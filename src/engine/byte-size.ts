// Sizes in messages, one way everywhere.

const MiB = 2 ** 20;

/** A size as people read it: bytes below 1 MiB (tests' small limits), else MiB to one decimal ("1.5 MiB", "128 MiB"). */
export function formatBytes(n: number): string {
  return n < MiB ? `${n} bytes` : `${+(n / MiB).toFixed(1)} MiB`;
}
