import type { FileStat } from "../../protocol/agent-frames.js";
import { GoFileMode, ZERO_MOD_TIME, type WireFileInfo } from "../../protocol/rpc.js";

const S_IFMT = 0o170000;

/**
 * POSIX st_mode -> the Go os.FileMode bits that `list_files` carries on the wire (spec 2.6).
 * Arithmetic instead of bitwise ops: bit 31 does not fit JavaScript's signed 32-bit operators.
 */
export function toGoFileMode(stMode: number): number {
  let mode = stMode & 0o777;
  switch (stMode & S_IFMT) {
    case 0o040000: mode += GoFileMode.DIR; break;
    case 0o120000: mode += GoFileMode.SYMLINK; break;
    case 0o060000: mode += GoFileMode.DEVICE; break;
    case 0o020000: mode += GoFileMode.DEVICE + GoFileMode.CHAR_DEVICE; break;
    case 0o010000: mode += GoFileMode.NAMED_PIPE; break;
    case 0o140000: mode += GoFileMode.SOCKET; break;
  }
  if (stMode & 0o4000) mode += GoFileMode.SETUID;
  if (stMode & 0o2000) mode += GoFileMode.SETGID;
  if (stMode & 0o1000) mode += GoFileMode.STICKY;
  return mode;
}

/**
 * A modification time as Go's time.Time marshals into JSON (RFC 3339 with up to nine fractional
 * digits, trailing zeros dropped, UTC). Years outside 1-9999, which RFC 3339 cannot write, and
 * times a Date cannot hold are the zero time.
 */
export function rfc3339(mtimeMs: number | undefined, mtimeNs: number): string {
  if (mtimeMs === undefined) return ZERO_MOD_TIME;
  const date = new Date(mtimeMs);
  const year = date.getUTCFullYear();
  if (year < 1 || year > 9999) return ZERO_MOD_TIME;
  const fraction = String(mtimeNs).padStart(9, "0").replace(/0+$/, "");
  return `${date.toISOString().slice(0, 19)}${fraction ? `.${fraction}` : ""}Z`;
}

/** A file as `list_files` and `stat_file` send it. */
export function toWireFileInfo(name: string, st: FileStat): WireFileInfo {
  return {
    name,
    size: st.size,
    mode: toGoFileMode(st.mode),
    mod_time: rfc3339(st.mtimeMs, st.mtimeNs),
    is_dir: (st.mode & S_IFMT) === 0o040000,
  };
}
