import { GoFileMode } from "../../protocol/rpc.js";

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
