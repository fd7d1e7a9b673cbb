import { invalidArgument } from "@expertmesh/shared";

/** What a client may set; everything optional (vLLM's SamplingParams, camelCased). */
export interface SamplingOptions {
  /** 0 = greedy (argmax). Default 1. */
  temperature?: number;
  /** Keep the k most likely tokens; 0 or -1 = off. Default off. */
  topK?: number;
  /** Keep the smallest most-likely set with mass ≥ topP; 1 = off. Default 1. */
  topP?: number;
  /** Drop tokens whose probability is below minP × the top probability; 0 = off. Default 0. */
  minP?: number;
  /** Seed of this request's own PRNG: same seed, same samples. Default: random. */
  seed?: number;
  /** Tokens to generate at most. Default 16. */
  maxTokens?: number;
  /** Finish with reason "stop" when one of these is sampled (the token is still emitted). */
  stopTokenIds?: readonly number[];
  /** Keep generating past the model's end-of-sequence token. Default false. */
  ignoreEos?: boolean;
  /** Return the chosen token's logprob and this many top logprobs per step; undefined = none. */
  logprobs?: number;
}

/** Validated, fully defaulted sampling parameters of one request. */
export interface SamplingParams {
  readonly temperature: number;
  /** 0 = off. */
  readonly topK: number;
  readonly topP: number;
  readonly minP: number;
  readonly seed: number | null;
  readonly maxTokens: number;
  readonly stopTokenIds: ReadonlySet<number>;
  readonly ignoreEos: boolean;
  /** null = no logprobs; 0 = only the chosen token's. */
  readonly logprobs: number | null;
}

export interface SamplingLimits {
  vocabSize: number;
  /** Most top logprobs a request may ask for (vLLM's max_logprobs, default 20). */
  maxLogprobs?: number;
}

export const DEFAULT_MAX_LOGPROBS = 20;

/** Validates client options against the model (field errors are INVALID_ARGUMENT). */
export function compileSamplingParams(options: SamplingOptions, limits: SamplingLimits): SamplingParams {
  const { vocabSize } = limits;
  const maxLogprobs = limits.maxLogprobs ?? DEFAULT_MAX_LOGPROBS;
  const temperature = options.temperature ?? 1;
  if (!Number.isFinite(temperature) || temperature < 0)
    throw invalidArgument("temperature", "must be a finite number ≥ 0");
  let topK = options.topK ?? 0;
  if (!Number.isInteger(topK) || topK < -1)
    throw invalidArgument("topK", "must be an integer ≥ 1, or 0 / -1 for off");
  if (topK === -1 || topK >= vocabSize) topK = 0;
  const topP = options.topP ?? 1;
  if (!(topP > 0 && topP <= 1)) throw invalidArgument("topP", "must be in (0, 1]");
  const minP = options.minP ?? 0;
  if (!(minP >= 0 && minP <= 1)) throw invalidArgument("minP", "must be in [0, 1]");
  const seed = options.seed ?? null;
  if (seed !== null && !Number.isSafeInteger(seed)) throw invalidArgument("seed", "must be an integer");
  const maxTokens = options.maxTokens ?? 16;
  if (!Number.isSafeInteger(maxTokens) || maxTokens < 1)
    throw invalidArgument("maxTokens", "must be an integer ≥ 1");
  const stopTokenIds = new Set<number>();
  for (const id of options.stopTokenIds ?? []) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw invalidArgument("stopTokenIds", `${id} is not a token id of this model (vocab ${vocabSize})`);
    }
    stopTokenIds.add(id);
  }
  const logprobs = options.logprobs ?? null;
  if (
    logprobs !== null &&
    (!Number.isInteger(logprobs) || logprobs < 0 || logprobs > Math.min(maxLogprobs, vocabSize))
  ) {
    throw invalidArgument("logprobs", `must be an integer in [0, ${Math.min(maxLogprobs, vocabSize)}]`);
  }
  return {
    temperature,
    topK,
    topP,
    minP,
    seed,
    maxTokens,
    stopTokenIds,
    ignoreEos: options.ignoreEos ?? false,
    logprobs,
  };
}
