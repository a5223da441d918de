// A one-shot "stop this exec" switch: what an AbortController gives an exec, without the
// EventTarget. Every exec makes one, on the round-trip hot path, where an AbortController, its
// AbortSignal and their listener bookkeeping cost ~8% of the engine's CPU per exec.

export class CancelSwitch {
  private fired = false;
  private action: (() => void) | undefined;

  get aborted(): boolean {
    return this.fired;
  }

  /** Flips the switch: the action set by whenAborted() runs once. Idempotent. */
  abort(): void {
    if (this.fired) return;
    this.fired = true;
    const action = this.action;
    this.action = undefined;
    action?.();
  }

  /**
   * Sets what abort() does (one action; a later call replaces it). Runs it at once when the
   * switch was already flipped, so an abort before the operation started is not lost.
   */
  whenAborted(action: () => void): void {
    if (this.fired) action();
    else this.action = action;
  }

  /** Forgets the action: the operation it would stop has ended. */
  disarm(): void {
    this.action = undefined;
  }
}
