// Image references ("alpine", "python:3.12-alpine", "ghcr.io/x/y:t", "name@sha256:...") in their
// canonical, fully qualified form, following the Docker reference grammar
// (github.com/distribution/reference), so the same image is always stored under one name.

const DEFAULT_DOMAIN = "docker.io";
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;
const MAX_NAME_LENGTH = 255;

export interface ParsedRef {
  domain: string;
  path: string;
  tag: string | undefined;
  digest: string | undefined;
}

function invalid(ref: string, why: string): Error {
  return new Error(`invalid image reference ${JSON.stringify(ref)}: ${why}`);
}

export function parseRef(ref: string): ParsedRef {
  if (ref.length === 0) throw invalid(ref, "it is empty");
  if (/\s/.test(ref)) throw invalid(ref, "it contains whitespace");

  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw invalid(ref, `bad digest ${JSON.stringify(digest)} (expected sha256: and 64 lowercase hex digits)`);
  }

  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw invalid(ref, `bad tag ${JSON.stringify(tag)} (letters, digits, "_", "." and "-", at most 128)`);
  }
  if (rest.length === 0) throw invalid(ref, "the repository name is empty");

  // As in Docker: the first component is a registry only if it looks like a host name.
  let domain = DEFAULT_DOMAIN;
  let path = rest;
  const slash = rest.indexOf("/");
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (first.includes(".") || first.includes(":") || first === "localhost") {
      if (!DOMAIN.test(first)) throw invalid(ref, `bad registry host ${JSON.stringify(first)}`);
      domain = first === "index.docker.io" ? DEFAULT_DOMAIN : first;
      path = rest.slice(slash + 1);
    }
  }
  for (const component of path.split("/")) {
    if (component !== component.toLowerCase()) throw invalid(ref, "the repository name must be lowercase");
    if (!PATH_COMPONENT.test(component)) {
      throw invalid(ref, `bad repository name component ${JSON.stringify(component)} (lowercase letters and digits, separated by ".", "_", "__" or "-")`);
    }
  }
  if (domain === DEFAULT_DOMAIN && !path.includes("/")) path = `library/${path}`;
  if (domain.length + 1 + path.length > MAX_NAME_LENGTH) throw invalid(ref, `the name is longer than ${MAX_NAME_LENGTH} characters`);
  return { domain, path, tag, digest };
}

/** The canonical form: registry/repository[:tag][@digest], ":latest" when neither is given. */
export function formatRef(r: ParsedRef): string {
  const tag = r.tag ?? (r.digest ? undefined : "latest");
  return `${r.domain}/${r.path}${tag ? `:${tag}` : ""}${r.digest ? `@${r.digest}` : ""}`;
}

/** "alpine" -> "docker.io/library/alpine:latest"; throws a clear Error for an invalid reference. */
export function normalizeRef(ref: string): string {
  return formatRef(parseRef(ref));
}

/** Short display form: drops "docker.io/library/" and "docker.io/" like the docker CLI does. */
export function familiarRef(canonical: string): string {
  return canonical.replace(/^docker\.io\/library\//, "").replace(/^docker\.io\//, "");
}
