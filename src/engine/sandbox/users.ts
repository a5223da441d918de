/** Reads a file of the image, from inside the sandbox (so its symlinks resolve there, not on the host). */
export type GuestFileReader = (path: string) => Promise<Buffer>;

/**
 * The image's USER ("", "1000", "1000:1000", "nobody", "nobody:nogroup") as the numeric
 * "uid[:gid]" the agent takes. Names are looked up in the image's /etc/passwd and /etc/group,
 * and a bare name or uid gets its passwd group, so the agent needs no NSS.
 */
export async function resolveUser(read: GuestFileReader, user: string): Promise<string> {
  if (!user) return "";
  const [u = "", g] = user.split(":", 2);
  const numeric = (s: string) => /^\d+$/.test(s);
  const passwd = numeric(u) && g !== undefined ? undefined : await accounts(read, "/etc/passwd", !numeric(u));
  const uid = numeric(u) ? u : lookup(passwd!, u, 2, "/etc/passwd");
  let gid: string | undefined;
  if (g !== undefined) gid = numeric(g) ? g : lookup(await accounts(read, "/etc/group", true), g, 2, "/etc/group");
  else gid = passwd?.find((cols) => cols[2] === uid)?.[3];
  return gid === undefined ? uid : `${uid}:${gid}`;
}

async function accounts(read: GuestFileReader, path: string, required: boolean): Promise<string[][]> {
  let text = "";
  try {
    text = (await read(path)).toString("utf8");
  } catch (err) {
    if (required) throw new Error(`cannot resolve the image's user: reading ${path} in the image failed: ${(err as Error).message}`);
  }
  return text.split("\n").map((line) => line.split(":"));
}

function lookup(rows: string[][], name: string, field: number, file: string): string {
  const value = rows.find((cols) => cols[0] === name)?.[field];
  if (value === undefined || !/^\d+$/.test(value)) throw new Error(`user or group ${JSON.stringify(name)} is not defined in the image's ${file}`);
  return value;
}
