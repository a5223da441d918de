/** Prints rows as columns separated by at least two spaces (the format `list` uses upstream). */
export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cols: string[]) => cols.map((c, i) => (i === cols.length - 1 ? c : c.padEnd(widths[i]! + 2))).join("").trimEnd();
  console.log(line(header));
  for (const r of rows) console.log(line(r));
}
