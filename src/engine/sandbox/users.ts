import { readFile } from "node:fs/promises";
import { join } from "node:path";

/**
 * The image's USER ("", "1000", "1000:1000", "nobody", "nobody:nogroup") as the numeric
 * "uid[:gid]" the agent takes. Names are looked up in the image's own /etc/passwd and
 * /etc/group on the host side, so the agent needs no NSS.
 */
export async function resolveUser(rootfs: string, user: string): Promise<string> {
  if (!user) return "";
  const [u = "", g] = user.split(":", 2);
  const uid = /^\d+$/.test(u) ? u : await lookup(join(rootfs, "etc", "passwd"), u, 2);
  let gid = g === undefined ? undefined : /^\d+$/.test(g) ? g : await lookup(join(rootfs, "etc", "group"), g, 2);
  if (gid === undefined && !/^\d+$/.test(u)) gid = await lookup(join(rootfs, "etc", "passwd"), u, 3);
  return gid === undefined ? uid : `${uid}:${gid}`;
}

async function lookup(file: string, name: string, field: number): Promise<string> {
  let text = "";
  try {
    text = await readFile(file, "utf8");
  } catch {
    // fall through to the error below
  }
  for (const line of text.split("\n")) {
    const cols = line.split(":");
    if (cols[0] === name && cols[field] && /^\d+$/.test(cols[field]!)) return cols[field]!;
  }
  throw new Error(`user or group ${JSON.stringify(name)} is not defined in the image's ${file.endsWith("group") ? "/etc/group" : "/etc/passwd"}`);
}
