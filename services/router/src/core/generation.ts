/**
 * The one generation interface every front end of the router calls: the gRPC InferenceService,
 * the OpenAI-compatible HTTP API and the batch jobs. Requests arrive here already decoded from
 * their wire format; validation, tokenization, admission, the attention stream, stop strings and
 * detokenization all happen behind `GenerationService.generate`.
 */

/** Sampling parameters after the front end's defaults (zero values mean "disabled"). */
export interface SamplingOptions {
  /** Softmax temperature in [0, 2]; 0 is greedy argmax. */
  temperature: number;
  /** Nucleus sampling mass in (0, 1]; 1 disables it. */
  topP: number;
  /** Keep the top_k most likely tokens; 0 and -1 disable it (as in vLLM). */
  topK: number;
  /** Drop tokens below min_p × the most likely token's probability, in [0, 1]; 0 disables. */
  minP?: number;
  /** Sampler seed; unset means random. */
  seed?: bigint;
  /** Most tokens to generate; 0 means the router's default (EXPERTMESH_DEFAULT_MAX_TOKENS), capped by the context left. */
  maxTokens: number;
  /** Generation ends when the text contains one of these (not returned). */
  stop: string[];
  /** Generation ends after one of these tokens (counted and returned as ids, text not returned). */
  stopTokenIds: number[];
  /** Keep generating past the model's EOS. */
  ignoreEos: boolean;
}

/**
 * Text is tokenized by the router: BOS first (when the tokenizer has one and `addBos` is not
 * false), then the text's tokens; special-token strings inside the text are recognised (so a
 * rendered chat template passes `addBos: false` and writes BOS itself). Token ids are used as given.
 */
export type GenerationPrompt = { text: string; addBos?: boolean } | { tokenIds: number[] };

export interface GenerationRequest {
  /** Client-chosen (or router-made) id, for logs and echoes. */
  requestId: string;
  prompt: GenerationPrompt;
  sampling: SamplingOptions;
  /** Report the chosen token's logprob per generated token. */
  logprobs: boolean;
  /** Alternatives per generated token, 0..20 (implies logprobs when > 0). */
  topLogprobs: number;
  /** Skip detokenization: chunks carry token ids only and `text` stays "" (stop strings need text). */
  skipDetokenize?: boolean;
  /** When requests wait for a free attention slot, interactive ones are admitted before batch ones. */
  priority: "interactive" | "batch";
  /** Absolute deadline, Unix epoch milliseconds; unset means none. */
  deadline?: number;
}

/** Logprobs of one generated token. */
export interface TokenLogprob {
  tokenId: number;
  /** Natural-log probability of the chosen token (raw logits, before temperature). */
  logprob: number;
  /** Most likely alternatives, most likely first. */
  top: { tokenId: number; logprob: number }[];
}

export type FinishReason = "stop" | "length" | "cancelled" | "error";

export interface GenerationUsage {
  promptTokens: number;
  completionTokens: number;
}

/**
 * One piece of a streamed generation. Every chunk but the last has no finishReason; the last one
 * has finishReason and usage (it may carry no tokens). Failures before or during generation are
 * thrown from the iterator as ExpertMeshError (INVALID_ARGUMENT naming the field,
 * RESOURCE_EXHAUSTED when the queue is full, UNAVAILABLE when no attention node can take it or
 * its node failed, DEADLINE_EXCEEDED past `deadline`, ...), never yielded: consumers see only
 * "stop" | "length" | "cancelled" ("error" exists for the wire mapping).
 */
export interface GenerationChunk {
  /** Tokens generated since the previous chunk. */
  tokenIds: number[];
  /** Text added since the previous chunk (held back while it could still become a stop string). */
  text: string;
  /** Parallel to tokenIds, present when logprobs or topLogprobs was requested. */
  logprobs?: TokenLogprob[];
  finishReason?: FinishReason;
  /** Set on the final chunk. */
  usage?: GenerationUsage;
}

export interface GenerationService {
  /**
   * Streams one request's generation. Aborting `signal` (client gone, cancelled) stops the
   * sequence on its attention node and ends the iterator with a final "cancelled" chunk;
   * breaking out of the loop (iterator.return) aborts it too.
   */
  generate(req: GenerationRequest, signal: AbortSignal): AsyncIterable<GenerationChunk>;
  /** The served model's name and context length, for /v1/models and defaults. */
  readonly model: { name: string; maxModelLen: number; vocabSize: number };
}
