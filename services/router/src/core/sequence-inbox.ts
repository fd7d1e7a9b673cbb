/**
 * The hand-off between a node's stream (which delivers a sequence's outputs whenever a step
 * report arrives) and the request's generator (which takes them when its client is ready):
 * tokens accumulate until taken, so a slow consumer gets them merged into fewer chunks.
 */
import type { SequenceEnd, SequenceListener, SequenceToken } from "./attention-pool.ts";

export interface InboxBatch {
  readonly tokens: readonly SequenceToken[];
  /** Set once the sequence has ended on its node (after the tokens above). */
  readonly end: SequenceEnd | undefined;
}

export class SequenceInbox implements SequenceListener {
  #tokens: SequenceToken[] = [];
  #end: SequenceEnd | undefined;
  #taken = false;
  #wake: (() => void) | undefined;

  /** True once the node reported the sequence's end (taken or not). */
  get ended(): boolean {
    return this.#end !== undefined;
  }

  onTokens(tokens: readonly SequenceToken[]): void {
    if (this.#end !== undefined) return;
    for (const t of tokens) this.#tokens.push(t);
    this.#notify();
  }

  onEnd(end: SequenceEnd): void {
    if (this.#end !== undefined) return;
    this.#end = end;
    this.#notify();
  }

  /**
   * Everything delivered since the last call; waits while there is nothing. Resolves with an
   * empty batch when `signal` aborts first (the caller checks the signal).
   */
  async take(signal: AbortSignal): Promise<InboxBatch> {
    while (this.#tokens.length === 0 && this.#end === undefined && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          signal.removeEventListener("abort", done);
          this.#wake = undefined;
          resolve();
        };
        this.#wake = done;
        signal.addEventListener("abort", done, { once: true });
      });
    }
    const tokens = this.#tokens;
    this.#tokens = [];
    const end = this.#taken ? undefined : this.#end;
    if (end !== undefined) this.#taken = true;
    return { tokens, end };
  }

  #notify(): void {
    this.#wake?.();
  }
}
