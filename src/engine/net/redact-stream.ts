// Puts placeholders back where an upstream answer holds a secret's real value (an API that
// reflects the Authorization header, or hands back a value stored there earlier), so the value
// never reaches the guest. The matching is StreamReplacer's: linear in the bytes, and a value
// split across chunks is caught.
import type { SecretRule } from "./policy.js";
import { ReplacingStream, StreamReplacer, type Replacement } from "./stream-replace.js";

/** Value → placeholder, for each secret whose value must not reach the guest. */
export function redactions(secrets: readonly SecretRule[]): Replacement[] {
  return secrets.map((s) => ({ from: Buffer.from(s.value), to: Buffer.from(s.placeholder) }));
}

export class RedactStream extends ReplacingStream {
  constructor(replacements: Replacement[]) {
    super(new StreamReplacer(replacements));
  }
}

/** One short text (a header, a status line), redacted whole; bytes kept as they came (latin1). */
export function redactText(text: string, replacements: Replacement[]): string {
  if (!replacements.length) return text;
  const r = new StreamReplacer(replacements);
  return Buffer.concat([r.push(Buffer.from(text, "latin1")), r.flush()]).toString("latin1");
}
