/** Reads a file of the image, from inside the sandbox (so its symlinks resolve there, not on the host). */
export type GuestFileReader = (path: string) => Promise<Buffer>;

/** A user as the agent takes it ("uid[:gid]", "" for the default) and its home directory. */
export interface ResolvedUser {
  id: string;
  home: string;
}

/**
 * A USER ("", "1000", "1000:1000", "nobody", "nobody:nogroup") as the numeric "uid[:gid]" the
 * agent takes, with its home from the guest's /etc/passwd (Docker's fallback "/" when it has
 * none; "/root" for root). Names are looked up in the guest's /etc/passwd and /etc/group, and a
 * bare name or uid gets its passwd group, so the agent needs no NSS.
 */
export async function resolveUser(read: GuestFileReader, user: string): Promise<ResolvedUser> {
  // The default user is root: no guest read on the create path for it.
  if (!user) return { id: "", home: "/root" };
  const [u = "", g] = user.split(":", 2);
  const numeric = (s: string) => /^\d+$/.test(s);
  const passwd = await accounts(read, "/etc/passwd", !numeric(u), user);
  const uid = numeric(u) ? u : lookup(passwd, u, 2, "/etc/passwd");
  const entry = passwd.find((cols) => cols[2] === uid && (numeric(u) || cols[0] === u));
  const home = entry?.[5] || (uid === "0" ? "/root" : "/");
  let gid: string | undefined;
  if (g !== undefined) gid = numeric(g) ? g : lookup(await accounts(read, "/etc/group", true, user), g, 2, "/etc/group");
  else gid = entry?.[3];
  return { id: gid === undefined ? uid : `${uid}:${gid}`, home };
}

async function accounts(read: GuestFileReader, path: string, required: boolean, user: string): Promise<string[][]> {
  let text = "";
  try {
    text = (await read(path)).toString("utf8");
  } catch (err) {
    if (required) throw new Error(`cannot resolve user ${JSON.stringify(user)}: reading ${path} in the image failed: ${(err as Error).message}`);
  }
  return text.split("\n").map((line) => line.split(":"));
}

function lookup(rows: string[][], name: string, field: number, file: string): string {
  const value = rows.find((cols) => cols[0] === name)?.[field];
  if (value === undefined || !/^\d+$/.test(value)) throw new Error(`user or group ${JSON.stringify(name)} is not defined in the sandbox's ${file}`);
  return value;
}
