// Platforms ("linux/amd64", "linux/arm64/v8") and picking one manifest out of an index.

export interface Platform {
  os: string;
  architecture: string;
  variant?: string | undefined;
}

const GOARCH: Record<string, string> = { x64: "amd64", arm64: "arm64", arm: "arm", ia32: "386", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64" };

/** The platform sandboxes on this host run: linux/<host architecture>. */
export function hostPlatform(): Platform {
  return { os: "linux", architecture: GOARCH[process.arch] ?? process.arch };
}

export function parsePlatform(s: string): Platform {
  const [os, architecture, variant, ...rest] = s.split("/");
  if (!os || !architecture || rest.length > 0) throw new Error(`invalid platform ${JSON.stringify(s)} (expected os/arch[/variant], e.g. linux/amd64)`);
  return { os, architecture, variant };
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join("/");
}

export function platformMatches(have: Platform | undefined, want: Platform): boolean {
  if (!have || have.os !== want.os || have.architecture !== want.architecture) return false;
  return !want.variant || !have.variant || have.variant === want.variant;
}
