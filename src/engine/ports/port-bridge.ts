// One forwarded connection: a host socket joined to the guest's 127.0.0.1:<port> through the
// agent (PORT_* frames, guest/agent/PROTOCOL.md). Byte windows both ways: the agent sends at
// most ENGINE_WINDOW bytes we have not credited back, and we credit them only once the host
// socket took them, so a slow host reader holds at most a window here; we send at most the
// agent's window, and stop reading the host socket until it credits more. Nothing here pauses
// the agent channel: a stalled connection stalls only itself.
import type { Socket } from "node:net";
import type { AgentConnection, Completion } from "../agent/connection.js";
import { AgentProtocolError, DATA_CHUNK, FrameType, type Frame } from "../../protocol/agent-frames.js";
import { decodeCredit, encodeCredit, encodePortClose, encodePortConnect } from "../../protocol/port-frames.js";

/** Bytes the agent may send on one connection before we credit them back. */
export const ENGINE_WINDOW = 1024 * 1024;
/** Credit goes back once this much reached the host socket (or when its buffer empties). */
const CREDIT_BATCH = ENGINE_WINDOW / 4;

const EMPTY = Buffer.alloc(0);

export class PortBridge {
  private id = 0;
  /** Bytes we may still send to the agent. */
  private sendWindow = 0;
  /** Bytes the agent may still send us. */
  private recvRoom = ENGINE_WINDOW;
  /** Written to the host socket, not yet credited back. */
  private unacked = 0;
  /** Host bytes beyond the agent's window, sent when it credits more. */
  private held: Buffer = EMPTY;
  private waitingDrain = false;
  private hostEnded = false;
  private shutdownSent = false;
  private guestEnded = false;
  /** The agent's final frame arrived (or the channel is gone): the id is no longer ours. */
  private over = false;
  /** We asked the agent to close the guest side. */
  private closeSent = false;
  /** Settles once the guest side's id is known (PORT_CONNECT sent). */
  private opened: Promise<unknown> = Promise.resolve();
  readonly done: Promise<void>;

  private constructor(private readonly agent: AgentConnection, private readonly socket: Socket, readonly guestPort: number) {
    this.done = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  }

  /**
   * Opens the guest side for `socket` and relays until both sides are done. Never throws: a
   * failure (refused in the guest, channel lost) resets the host socket.
   */
  static open(agent: AgentConnection, socket: Socket, guestPort: number): PortBridge {
    const bridge = new PortBridge(agent, socket, guestPort);
    bridge.start();
    return bridge;
  }

  /** Ends the connection now: the host socket is destroyed and the guest side reset. */
  abort(): void {
    this.socket.destroy();
  }

  private start(): void {
    const { socket } = this;
    socket.pause(); // nothing is read before the guest side is connected
    socket.setNoDelay(true);
    socket.on("error", () => undefined); // a reset by the host peer shows as 'close' with hadError
    socket.on("data", (d: Buffer) => this.fromHost(d));
    socket.on("end", () => {
      this.hostEnded = true;
      this.maybeShutdown();
    });
    socket.on("close", () => this.hostClosed());
    let started;
    try {
      started = this.agent.startOp<void>(FrameType.PORT_CONNECT, encodePortConnect(this.guestPort, ENGINE_WINDOW), (f, d) => this.onFrame(f, d));
    } catch {
      socket.resetAndDestroy();
      return;
    }
    this.opened = started.then(({ id }) => (this.id = id), () => undefined);
    void started.then(({ result }) => result).then(
      () => {
        this.over = true;
        if (!socket.destroyed && !socket.writableEnded) socket.end();
      },
      () => {
        this.over = true;
        if (!socket.destroyed) socket.resetAndDestroy();
      },
    );
  }

  private onFrame(frame: Frame, done: Completion<void>): void {
    this.id = frame.id; // a frame may beat startOp's promise
    switch (frame.type) {
      case FrameType.PORT_CONNECTED:
        this.sendWindow = decodeCredit(frame.payload);
        this.pump();
        return;
      case FrameType.PORT_DATA_OUT:
        this.recvRoom -= frame.payload.length;
        if (this.recvRoom < 0) throw new AgentProtocolError(`port connection ${frame.id}: the sandbox sent beyond its window`);
        this.toHost(frame.payload);
        return;
      case FrameType.PORT_CREDIT_OUT:
        this.sendWindow += decodeCredit(frame.payload);
        this.pump();
        return;
      case FrameType.PORT_EOF:
        this.guestEnded = true;
        if (!this.socket.destroyed) this.socket.end();
        return;
      case FrameType.PORT_CLOSED:
        done.resolve();
        return;
      default:
        done.unexpected();
    }
  }

  /** Guest bytes to the host socket; credited back once the socket took them. */
  private toHost(data: Buffer): void {
    if (this.socket.destroyed || this.socket.writableEnded || this.closeSent) {
      this.credit(data.length, true); // nobody will read them: keep the guest side moving to its end
      return;
    }
    this.socket.write(data, (err) => {
      if (!err) this.credit(data.length, this.socket.writableLength === 0);
    });
  }

  private credit(bytes: number, now: boolean): void {
    this.unacked += bytes;
    if (this.over || this.closeSent || (!now && this.unacked < CREDIT_BATCH)) return;
    const more = this.unacked;
    this.unacked = 0;
    this.recvRoom += more;
    this.send(FrameType.PORT_CREDIT, encodeCredit(more));
  }

  private fromHost(data: Buffer): void {
    this.held = this.held.length ? Buffer.concat([this.held, data]) : data;
    this.pump();
  }

  /** Sends held host bytes within the agent's window; reads the host socket only while there is room. */
  private pump(): void {
    while (this.held.length > 0 && this.sendWindow > 0 && !this.waitingDrain && !this.over) {
      const n = Math.min(this.held.length, this.sendWindow, DATA_CHUNK);
      const chunk = this.held.subarray(0, n);
      this.held = n === this.held.length ? EMPTY : this.held.subarray(n);
      this.sendWindow -= n;
      this.send(FrameType.PORT_DATA, chunk);
    }
    if (this.held.length > 0 || this.waitingDrain) this.socket.pause();
    else if (this.sendWindow > 0 && !this.over) this.socket.resume();
    this.maybeShutdown();
  }

  /** The host peer finished sending and everything it sent is on its way: tell the guest. */
  private maybeShutdown(): void {
    if (!this.hostEnded || this.shutdownSent || this.held.length > 0 || this.id === 0 || this.over) return;
    this.shutdownSent = true;
    this.send(FrameType.PORT_SHUTDOWN, EMPTY);
  }

  private hostClosed(): void {
    // Both directions ended well: the agent's PORT_CLOSED follows by itself.
    const clean = this.hostEnded && this.guestEnded && this.held.length === 0;
    if (this.over || clean || this.closeSent) return;
    if (this.id === 0) {
      void this.opened.then(() => this.id !== 0 && this.hostClosed()); // the peer left before PORT_CONNECT went out
      return;
    }
    this.closeSent = true;
    this.send(FrameType.PORT_CLOSE, encodePortClose(true));
  }

  private send(type: (typeof FrameType)[keyof typeof FrameType], payload: Buffer): void {
    let full: Promise<void> | undefined;
    try {
      full = this.agent.trySend(type, this.id, payload);
    } catch {
      this.socket.destroy(); // the channel is gone; the operation fails and resets the socket
      return;
    }
    if (!full || this.waitingDrain) return;
    this.waitingDrain = true;
    this.socket.pause();
    void full.then(() => {
      this.waitingDrain = false;
      this.pump();
    });
  }
}
