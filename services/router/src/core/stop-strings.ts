/**
 * Stop strings over streamed text. Text is released as soon as it can no longer be the start of
 * a stop string: only the longest tail that is a proper prefix of some stop string is held back
 * (never a fixed window), so a stream without near-matches is not delayed at all. On a match, the
 * text before it is released and the match and everything after it are dropped (as OpenAI and
 * vLLM do by default).
 */

export interface StopMatch {
  /** Text that may be returned now. */
  readonly text: string;
  /** The stop string found, when this text completed one. */
  readonly matched: string | undefined;
}

export class StopStringMatcher {
  readonly #stops: readonly string[];
  readonly #longest: number;
  #held = "";
  #matched: string | undefined;

  constructor(stops: readonly string[]) {
    this.#stops = stops.filter((s) => s.length > 0);
    this.#longest = this.#stops.reduce((m, s) => Math.max(m, s.length), 0);
  }

  /** The stop string found so far, if any; nothing more is released after it. */
  get matched(): string | undefined {
    return this.#matched;
  }

  /** Text not released yet because it could still become a stop string. */
  get held(): string {
    return this.#held;
  }

  /** Adds generated text; returns what can be released now and whether a stop string completed. */
  push(text: string): StopMatch {
    if (this.#matched !== undefined) return { text: "", matched: undefined };
    if (this.#stops.length === 0) return { text, matched: undefined };
    const buffer = this.#held + text;
    // Earliest match wins; a stop string could only start in the held tail or the new text,
    // and the held tail never contains a whole one.
    let at = -1;
    let found: string | undefined;
    for (const stop of this.#stops) {
      const i = buffer.indexOf(stop);
      if (i !== -1 && (at === -1 || i < at)) {
        at = i;
        found = stop;
      }
    }
    if (found !== undefined) {
      this.#matched = found;
      this.#held = "";
      return { text: buffer.slice(0, at), matched: found };
    }
    const keep = this.#partialMatchLength(buffer);
    this.#held = buffer.slice(buffer.length - keep);
    return { text: buffer.slice(0, buffer.length - keep), matched: undefined };
  }

  /** End of the stream: releases the held tail (it never became a stop string). */
  flush(): string {
    const text = this.#matched === undefined ? this.#held : "";
    this.#held = "";
    return text;
  }

  /** Length of the longest tail of `buffer` that is a proper prefix of a stop string. */
  #partialMatchLength(buffer: string): number {
    for (let k = Math.min(buffer.length, this.#longest - 1); k > 0; k--) {
      const tail = buffer.slice(buffer.length - k);
      if (this.#stops.some((stop) => stop.length > k && stop.startsWith(tail))) return k;
    }
    return 0;
  }
}
