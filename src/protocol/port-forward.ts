// Port-forward specs and results, shared by the SDK, the CLI and the engine (protocol spec 5.6).

export interface PortForwardSpec {
  localPort: number;
  remotePort: number;
}

/** The wire form of one bound listener (`port_forward`'s result). */
export interface WirePortBinding {
  address: string;
  local_port: number;
  remote_port: number;
}

/** Where forwards listen when no address is given: the host's loopback only, as upstream. */
export const DEFAULT_FORWARD_ADDRESSES: readonly string[] = ["127.0.0.1"];

/**
 * "[LOCAL:]REMOTE", as upstream's SDKs and CLI take it: one number is the same port on both
 * sides. Throws a RangeError naming the spec.
 */
export function parsePortSpec(spec: string): PortForwardSpec {
  const parts = spec.trim().split(":");
  if (parts.length > 2) throw new RangeError(`invalid port forward ${JSON.stringify(spec)}: use [LOCAL:]REMOTE`);
  const ports = parts.map((p) => {
    const n = /^[0-9]+$/.test(p.trim()) ? Number(p.trim()) : NaN;
    if (!Number.isInteger(n) || n < 1 || n > 65535) {
      throw new RangeError(`invalid port forward ${JSON.stringify(spec)}: ports must be 1-65535`);
    }
    return n;
  });
  return { localPort: ports[0]!, remotePort: ports[ports.length - 1]! };
}

export function toWireForwards(specs: readonly PortForwardSpec[]): Array<{ local_port: number; remote_port: number }> {
  return specs.map((s) => ({ local_port: s.localPort, remote_port: s.remotePort }));
}

/** "Forwarding 127.0.0.1:8080 -> sandbox:80", as upstream's CLI prints each binding. */
export function describeBinding(b: WirePortBinding): string {
  const host = b.address.includes(":") ? `[${b.address}]` : b.address;
  return `Forwarding ${host}:${b.local_port} -> sandbox:${b.remote_port}`;
}
