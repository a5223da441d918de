// The port-forward request fields (protocol spec 5.6), for `port_forward` and for the `create`
// extension that binds forwards as part of the create.
import { z } from "zod";
import { isIP } from "node:net";
import type { PortForwardSpec } from "../../protocol/port-forward.js";
import { DEFAULT_FORWARD_ADDRESSES } from "../../protocol/port-forward.js";

const port = (what: string, min: number) =>
  z.number({ error: `${what} must be a number` }).int(`${what} must be an integer`).min(min, `${what} must be ${min}-65535`).max(65535, `${what} must be ${min}-65535`);

/** local_port 0 asks the host for a free port (the result says which). */
export const forwardSchema = z.strictObject({ local_port: port("local_port", 0), remote_port: port("remote_port", 1) });

export const forwardAddressesSchema = z.array(
  z.string().refine((a) => isIP(a) !== 0, { error: (i) => `invalid address ${JSON.stringify(i.input)}: must be an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1)` }),
);

export interface ForwardRequest {
  forwards: PortForwardSpec[];
  addresses: string[];
}

export function toForwardRequest(
  forwards: ReadonlyArray<z.infer<typeof forwardSchema>> | null | undefined, addresses: readonly string[] | null | undefined,
): ForwardRequest {
  return {
    forwards: (forwards ?? []).map((f) => ({ localPort: f.local_port, remotePort: f.remote_port })),
    addresses: addresses && addresses.length > 0 ? [...addresses] : [...DEFAULT_FORWARD_ADDRESSES],
  };
}
