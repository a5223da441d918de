// WWW-Authenticate challenges (RFC 7235) as registries send them:
//   Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"
//   Basic realm="Registry Realm"

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

const PARAM = /\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?/y;

/** The first challenge of the header (registries send one); undefined when there is none. */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*([A-Za-z][A-Za-z0-9_-]*)\s*/.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  PARAM.lastIndex = m[0].length;
  for (let p = PARAM.exec(header); p; p = PARAM.exec(header)) {
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : p[3]!;
    if (PARAM.lastIndex >= header.length) break;
  }
  return { scheme: m[1]!.toLowerCase(), params };
}
