/** One argv word for `sh -c`: single-quoted unless it is plainly safe. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_\-+=.,/:@%]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
