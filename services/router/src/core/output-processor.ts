/**
 * Turns one sequence's tokens, as the attention node reports them, into GenerationChunks:
 * incremental detokenization (the tokenizer's decoder holds back incomplete UTF-8), stop strings
 * (held back while undecided; a match ends the request with "stop"), the text of stop tokens and
 * EOS left out, logprobs kept parallel to token ids, and the final chunk's usage.
 */
import type { IncrementalDecoder, TextTokenizer } from "@expertmesh/tokenizer";
import type { SequenceToken } from "./attention-pool.ts";
import type { FinishReason, GenerationChunk, GenerationUsage, TokenLogprob } from "./generation.ts";
import { StopStringMatcher } from "./stop-strings.ts";

export interface OutputProcessorOptions {
  /** null (or detokenize false): token ids only, text stays "". */
  readonly tokenizer: TextTokenizer | null;
  readonly detokenize: boolean;
  readonly promptTokenIds: readonly number[];
  readonly stop: readonly string[];
  readonly stopTokenIds: readonly number[];
  /** The model's EOS ids: their text is never returned unless ignoreEos. */
  readonly eosTokenIds: readonly number[];
  readonly ignoreEos: boolean;
  /** Report logprobs in the chunks. */
  readonly logprobs: boolean;
}

export class OutputProcessor {
  readonly #options: OutputProcessorOptions;
  readonly #decoder: IncrementalDecoder | undefined;
  readonly #matcher: StopStringMatcher;
  readonly #silent: ReadonlySet<number>;
  #completionTokens = 0;
  #finished: FinishReason | undefined;

  constructor(options: OutputProcessorOptions) {
    this.#options = options;
    this.#decoder =
      options.detokenize && options.tokenizer !== null
        ? options.tokenizer.createIncrementalDecoder({ promptIds: options.promptTokenIds })
        : undefined;
    this.#matcher = new StopStringMatcher(options.stop);
    this.#silent = new Set([...options.stopTokenIds, ...(options.ignoreEos ? [] : options.eosTokenIds)]);
  }

  /** Tokens accepted so far (a stop-string match drops the tokens after the one completing it). */
  get completionTokens(): number {
    return this.#completionTokens;
  }

  /** Set once the output is complete (a stop string matched, or `finish` was called). */
  get finished(): FinishReason | undefined {
    return this.#finished;
  }

  /**
   * Adds tokens; returns the chunk they make. When a stop string completes, that chunk is the
   * final one (finishReason "stop", usage set) and later tokens are ignored.
   */
  push(tokens: readonly SequenceToken[]): GenerationChunk {
    const chunk: GenerationChunk = { tokenIds: [], text: "" };
    if (this.#finished !== undefined) return chunk;
    const logprobs: TokenLogprob[] | undefined = this.#options.logprobs ? [] : undefined;
    for (const token of tokens) {
      this.#completionTokens++;
      chunk.tokenIds.push(token.tokenId);
      logprobs?.push({
        tokenId: token.tokenId,
        logprob: token.logprob ?? 0,
        top: token.top.map((t) => ({ tokenId: t.tokenId, logprob: t.logprob })),
      });
      if (this.#decoder === undefined || this.#silent.has(token.tokenId)) continue;
      const { text, matched } = this.#matcher.push(this.#decoder.push(token.tokenId));
      chunk.text += text;
      if (matched !== undefined) {
        this.#finished = "stop";
        chunk.finishReason = "stop";
        chunk.usage = this.#usage();
        break;
      }
    }
    if (logprobs !== undefined) chunk.logprobs = logprobs;
    return chunk;
  }

  /** The final chunk: what was held back, the finish reason and usage (the node's, when it has them). */
  finish(reason: FinishReason, usage?: GenerationUsage): GenerationChunk {
    if (this.#finished !== undefined)
      return { tokenIds: [], text: "", finishReason: this.#finished, usage: this.#usage() };
    let text = "";
    if (this.#decoder !== undefined) {
      // Bytes of a character that never completed come out as U+FFFD, as in vLLM.
      const tail = this.#matcher.push(this.#decoder.flush());
      text += tail.text;
      if (tail.matched !== undefined) reason = "stop";
      text += this.#matcher.flush();
    }
    this.#finished = reason;
    return {
      tokenIds: [],
      text,
      ...(this.#options.logprobs ? { logprobs: [] } : {}),
      finishReason: reason,
      usage: usage ?? this.#usage(),
    };
  }

  #usage(): GenerationUsage {
    return { promptTokens: this.#options.promptTokenIds.length, completionTokens: this.#completionTokens };
  }
}
