// Docker credential helpers: `docker-credential-<name> get` reads a registry's server URL on
// stdin and prints {"ServerURL","Username","Secret"}; "credentials not found" (with a non-zero
// exit) means it has none for that registry. The secret never goes into a message or a log: a
// helper's output is only echoed in errors when it could not have been a secret (it failed).
import { runCommand } from "../../host-commands.js";
import { EngineError, type ErrorKind } from "../../../protocol/errors.js";

export interface HelperCredentials {
  username: string;
  secret: string;
}

const TIMEOUT_MS = 60_000; // helpers may ask the user to unlock a keyring
const MAX_OUTPUT = 64 * 1024;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export class CredentialHelperError extends EngineError {
  readonly kind: ErrorKind = "failed";
}

/** What the helper said when it failed, short, on one line. */
function said(text: string): string {
  const line = text.trim().replace(/\s+/g, " ");
  return line.length > 200 ? `${line.slice(0, 200)}...` : line;
}

/**
 * Asks helper `name` for the credentials of `serverUrl`; undefined when it has none.
 * `where` names the config entry that chose the helper, for messages.
 */
export async function helperCredentials(name: string, serverUrl: string, where: string): Promise<HelperCredentials | undefined> {
  const program = `docker-credential-${name}`;
  if (!NAME.test(name)) throw new CredentialHelperError(`${where} names the credential helper ${JSON.stringify(name)}, which is not a valid helper name`);
  const { status: code, stdout, stderr, spawnError, timedOut, outputTooLong } =
    await runCommand(program, ["get"], { input: serverUrl, timeoutMs: TIMEOUT_MS, maxOutputBytes: MAX_OUTPUT });
  if (spawnError) {
    const missing = (spawnError as NodeJS.ErrnoException).code === "ENOENT";
    throw new CredentialHelperError(missing
      ? `${where} says to ask the credential helper ${program}, which is not installed (not found on PATH)`
      : `cannot run the credential helper ${program} (from ${where}): ${spawnError.message}`);
  }
  if (timedOut) throw new CredentialHelperError(`the credential helper ${program} (from ${where}) did not answer within ${TIMEOUT_MS / 1000} s`);
  // Not echoed: what it printed may hold a secret.
  if (outputTooLong) throw new CredentialHelperError(`the credential helper ${program} (from ${where}) printed more than ${MAX_OUTPUT / 1024} KiB for ${serverUrl}`);
  if (code !== 0) {
    const message = said(stdout || stderr);
    if (/credentials not found/i.test(message)) return undefined;
    throw new CredentialHelperError(`the credential helper ${program} (from ${where}) failed for ${serverUrl} (exit status ${code})${message ? `: ${message}` : ""}`);
  }
  let json: { Username?: unknown; Secret?: unknown };
  try {
    json = JSON.parse(stdout) as typeof json;
  } catch {
    throw new CredentialHelperError(`the credential helper ${program} (from ${where}) answered for ${serverUrl} with something that is not JSON`);
  }
  if (typeof json?.Username !== "string" || typeof json.Secret !== "string") {
    throw new CredentialHelperError(`the credential helper ${program} (from ${where}) answered for ${serverUrl} without a string Username and Secret`);
  }
  if (json.Username === "<token>") {
    throw new CredentialHelperError(`the credential helper ${program} (from ${where}) gave an identity token for ${serverUrl}, which matchlock does not support yet; log in with a username and password or access token`);
  }
  if (json.Secret === "") return undefined;
  return { username: json.Username, secret: json.Secret };
}
