/**
 * Streaming detokenization as vLLM does it (`detokenize_incrementally`): a byte-level token
 * may end in the middle of a UTF-8 character, so text is emitted only when the decoded tail
 * no longer ends in U+FFFD. Two offsets into the ids keep the work per token constant:
 * text is decoded from `prefixOffset` (a few tokens of context, so merges and spaces decode
 * as they would in the full text) and compared with what was already emitted up to `readOffset`.
 */

export interface IncrementalDecoderOptions {
  /** Drop special tokens (default true). */
  skipSpecialTokens?: boolean;
  /** Prompt ids: give decoding its context without emitting them. */
  promptIds?: readonly number[];
}

export interface IncrementalDecoder {
  /** Adds generated ids; returns the text they complete ("" while a character is unfinished). */
  push(...ids: number[]): string;
  /** End of stream: returns whatever is left, with U+FFFD for bytes that never completed a character. */
  flush(): string;
  /** Every id pushed so far (after the prompt). */
  readonly generatedIds: readonly number[];
}

/** How many prompt tokens of context the first decode starts from (vLLM uses 5). */
const INITIAL_CONTEXT = 5;
const REPLACEMENT = "\uFFFD";

export function createIncrementalDecoder(
  decode: (ids: readonly number[], skipSpecialTokens: boolean) => string,
  options: IncrementalDecoderOptions = {},
): IncrementalDecoder {
  const skip = options.skipSpecialTokens ?? true;
  const prompt = options.promptIds ?? [];
  const ids: number[] = [...prompt];
  let prefixOffset = Math.max(0, prompt.length - INITIAL_CONTEXT);
  let readOffset = prompt.length;
  const generated: number[] = [];

  const pending = (final: boolean): string => {
    const prefixText = decode(ids.slice(prefixOffset, readOffset), skip);
    const newText = decode(ids.slice(prefixOffset), skip);
    if (newText.length > prefixText.length && (final || !newText.endsWith(REPLACEMENT))) {
      const out = newText.slice(prefixText.length);
      prefixOffset = readOffset;
      readOffset = ids.length;
      return out;
    }
    return "";
  };

  return {
    push(...newIds: number[]): string {
      ids.push(...newIds);
      generated.push(...newIds);
      return pending(false);
    },
    flush(): string {
      return readOffset < ids.length ? pending(true) : "";
    },
    get generatedIds(): readonly number[] {
      return generated;
    },
  };
}
