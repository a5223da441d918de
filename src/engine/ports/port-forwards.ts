// One set of port-forward listeners on a sandbox (protocol spec 5.6): the host listens on every
// address x forward, and each accepted connection reaches the guest's 127.0.0.1:<remote port>
// through the agent. A new set replaces the old one (its listeners are closed first; its live
// connections go on until they end); close() ends listeners and connections alike.
import { createServer, isIP, type Server, type Socket } from "node:net";
import type { AgentConnection } from "../agent/connection.js";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";
import { ErrorCode } from "../../protocol/rpc.js";
import type { PortForwardSpec, WirePortBinding } from "../../protocol/port-forward.js";
import { PortBridge } from "./port-bridge.js";

/** A listener could not be bound (port in use, address not on this host, no privilege). */
export class PortForwardBindError extends EngineError {
  readonly kind: ErrorKind = "failed";
  override readonly rpcCode = ErrorCode.VM_FAILED;
}

/** A bad address or port in the request. */
export class PortForwardParamsError extends EngineError {
  readonly kind: ErrorKind = "invalid_argument";
}

export class PortForwards {
  private servers: Server[] = [];
  /** What the current listeners are bound to. */
  bindings: readonly WirePortBinding[] = [];
  private readonly bridges = new Set<PortBridge>();
  private closed = false;
  /** One replace at a time: a second waits, so listeners of two calls never mix. */
  private turn: Promise<unknown> = Promise.resolve();

  constructor(private readonly agent: AgentConnection, private readonly log: (line: string) => void = () => {}) {}

  /** Closes the current listeners, then binds the new ones; on any failure none of them stays. */
  replace(forwards: readonly PortForwardSpec[], addresses: readonly string[]): Promise<WirePortBinding[]> {
    const run = this.turn.then(() => this.bindAll(forwards, addresses));
    this.turn = run.catch(() => undefined);
    return run;
  }

  /** Ends every listener and connection (the sandbox stops, or the session that asked ended). */
  async close(): Promise<void> {
    this.closed = true;
    await this.turn;
    await this.closeListeners();
    for (const b of this.bridges) b.abort();
    await Promise.all([...this.bridges].map((b) => b.done));
  }

  private async bindAll(forwards: readonly PortForwardSpec[], addresses: readonly string[]): Promise<WirePortBinding[]> {
    for (const a of addresses) {
      if (isIP(a) === 0) throw new PortForwardParamsError(`port-forward address ${JSON.stringify(a)} is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1)`);
    }
    await this.closeListeners();
    if (this.closed) throw new PortForwardBindError("the sandbox is stopping: no new port forwards");
    const bindings: WirePortBinding[] = [];
    const servers: Server[] = [];
    try {
      for (const f of forwards) {
        for (const address of addresses) {
          const server = await this.listen(address, f);
          servers.push(server);
          const bound = server.address();
          const port = typeof bound === "object" && bound ? bound.port : f.localPort;
          bindings.push({ address, local_port: port, remote_port: f.remotePort });
        }
      }
    } catch (err) {
      await Promise.all(servers.map(closeServer));
      throw err;
    }
    this.servers = servers;
    this.bindings = bindings;
    return bindings;
  }

  private listen(address: string, f: PortForwardSpec): Promise<Server> {
    // allowHalfOpen: a client that finished sending still gets the guest's answer.
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.accept(socket, f.remotePort));
    return new Promise<Server>((resolve, reject) => {
      server.once("error", (err: NodeJS.ErrnoException) => {
        const hint = err.code === "EACCES" ? " (ports below 1024 need root or CAP_NET_BIND_SERVICE)" : err.code === "EADDRNOTAVAIL" ? " (no interface of this host has that address)" : "";
        reject(new PortForwardBindError(`bind local port-forward listener ${address}:${f.localPort}: ${err.message}${hint}`));
      });
      server.listen({ host: address, port: f.localPort, ipv6Only: address.includes(":") }, () => {
        server.removeAllListeners("error");
        server.on("error", (err) => this.log(`port-forward listener ${address}:${f.localPort}: ${err.message}`));
        resolve(server);
      });
    });
  }

  private accept(socket: Socket, guestPort: number): void {
    if (this.closed || this.agent.lost) {
      socket.resetAndDestroy();
      return;
    }
    const bridge = PortBridge.open(this.agent, socket, guestPort);
    this.bridges.add(bridge);
    void bridge.done.then(() => this.bridges.delete(bridge));
  }

  private async closeListeners(): Promise<void> {
    const old = this.servers;
    this.servers = [];
    this.bindings = [];
    await Promise.all(old.map(closeServer));
  }
}

/**
 * Stops listening: the port is free once this returns. Not awaiting 'close', which waits for
 * every connection the listener accepted (those live on, as the spec's replace has it).
 */
async function closeServer(server: Server): Promise<void> {
  server.close();
}
