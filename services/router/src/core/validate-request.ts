/**
 * Request validation and resolution: a GenerationRequest as a front end decoded it → the
 * ResolvedRequest the router sends (token ids, every default filled in), or INVALID_ARGUMENT
 * naming the offending field. Field names are the gRPC request's paths ("sampling.top_p",
 * "top_logprobs", "prompt"); the HTTP front end maps them to its parameter names.
 */
import { invalidArgument } from "@expertmesh/shared";
import type { TextTokenizer } from "@expertmesh/tokenizer";
import type { GenerationRequest } from "./generation.ts";

/** What the served model allows. */
export interface ModelLimits {
  /** Token ids must be in [0, vocabSize). */
  readonly vocabSize: number;
  /** Prompt + completion, in tokens. */
  readonly maxModelLen: number;
  /** max_tokens when a request leaves it 0. */
  readonly defaultMaxTokens: number;
}

/** Sampling as the attention node receives it: every value valid, max_tokens resolved (≥ 1). */
export interface ResolvedSampling {
  readonly temperature: number;
  /** (0, 1]; 1 disables. */
  readonly topP: number;
  /** ≥ 0; 0 disables. */
  readonly topK: number;
  /** [0, 1]; 0 disables. */
  readonly minP: number;
  readonly seed: bigint | undefined;
  readonly maxTokens: number;
  readonly stop: readonly string[];
  readonly stopTokenIds: readonly number[];
  readonly ignoreEos: boolean;
}

export interface ResolvedRequest {
  readonly requestId: string;
  /** [n] the prompt as the model sees it. */
  readonly promptTokenIds: readonly number[];
  readonly sampling: ResolvedSampling;
  readonly logprobs: boolean;
  readonly topLogprobs: number;
  /** Produce text (false: token ids only). */
  readonly detokenize: boolean;
  readonly priority: "interactive" | "batch";
  readonly deadline: number | undefined;
}

/** vLLM's default max_logprobs and OpenAI's top_logprobs limit. */
export const MAX_TOP_LOGPROBS = 20;
/** Stop strings per request, and the longest one (they are matched against held-back text). */
export const MAX_STOP_STRINGS = 16;
export const MAX_STOP_STRING_LENGTH = 1024;
const MAX_REQUEST_ID_LENGTH = 256;

export function resolveRequest(
  req: GenerationRequest,
  limits: ModelLimits,
  tokenizer: TextTokenizer | null,
): ResolvedRequest {
  if (req.requestId.length > MAX_REQUEST_ID_LENGTH)
    throw invalidArgument("request_id", `must be at most ${MAX_REQUEST_ID_LENGTH} characters`);
  const s = req.sampling;
  // Sampling first: cheap checks before tokenizing a long prompt.
  const temperature = s.temperature;
  if (!(Number.isFinite(temperature) && temperature >= 0 && temperature <= 2))
    throw invalidArgument("sampling.temperature", `must be in [0, 2], got ${temperature}`);
  if (!(Number.isFinite(s.topP) && s.topP > 0 && s.topP <= 1))
    throw invalidArgument("sampling.top_p", `must be in (0, 1], got ${s.topP}`);
  if (!Number.isInteger(s.topK) || s.topK < -1)
    throw invalidArgument("sampling.top_k", `must be an integer ≥ 1, or 0 / -1 to disable it; got ${s.topK}`);
  const minP = s.minP ?? 0;
  if (!(Number.isFinite(minP) && minP >= 0 && minP <= 1))
    throw invalidArgument("sampling.min_p", `must be in [0, 1], got ${minP}`);
  if (s.seed !== undefined && (s.seed < 0n || s.seed >= 2n ** 64n))
    throw invalidArgument("sampling.seed", `must be an unsigned 64-bit integer, got ${s.seed}`);
  if (!Number.isSafeInteger(s.maxTokens) || s.maxTokens < 0)
    throw invalidArgument(
      "sampling.max_tokens",
      `must be an integer ≥ 1 (0: the server's default), got ${s.maxTokens}`,
    );
  if (!Number.isInteger(req.topLogprobs) || req.topLogprobs < 0 || req.topLogprobs > MAX_TOP_LOGPROBS)
    throw invalidArgument(
      "top_logprobs",
      `must be an integer in [0, ${MAX_TOP_LOGPROBS}], got ${req.topLogprobs}`,
    );
  const detokenize = tokenizer !== null && req.skipDetokenize !== true;
  checkStopStrings(s.stop, detokenize, tokenizer === null);
  checkTokenIds(s.stopTokenIds, limits.vocabSize, "sampling.stop_token_ids");

  const promptTokenIds = tokenizePrompt(req, limits, tokenizer);
  const room = limits.maxModelLen - promptTokenIds.length;
  if (room < 1) {
    throw invalidArgument(
      "prompt",
      `${promptTokenIds.length} prompt tokens leave no room to generate in the context of ${limits.maxModelLen} tokens`,
    );
  }
  if (s.maxTokens > room) {
    throw invalidArgument(
      "sampling.max_tokens",
      `${s.maxTokens} tokens after a prompt of ${promptTokenIds.length} exceed the context of ${limits.maxModelLen} tokens (at most ${room} fit)`,
    );
  }
  const maxTokens = s.maxTokens === 0 ? Math.min(limits.defaultMaxTokens, room) : s.maxTokens;
  return {
    requestId: req.requestId,
    promptTokenIds,
    sampling: {
      temperature,
      topP: s.topP,
      topK: s.topK === -1 ? 0 : s.topK,
      minP,
      seed: s.seed,
      maxTokens,
      stop: [...new Set(s.stop)],
      stopTokenIds: [...new Set(s.stopTokenIds)],
      ignoreEos: s.ignoreEos,
    },
    logprobs: req.logprobs || req.topLogprobs > 0,
    topLogprobs: req.topLogprobs,
    detokenize,
    priority: req.priority,
    deadline: req.deadline,
  };
}

function tokenizePrompt(
  req: GenerationRequest,
  limits: ModelLimits,
  tokenizer: TextTokenizer | null,
): number[] {
  const prompt = req.prompt;
  if ("tokenIds" in prompt) {
    if (prompt.tokenIds.length === 0) throw invalidArgument("prompt", "must not be empty");
    checkTokenIds(prompt.tokenIds, limits.vocabSize, "prompt");
    return prompt.tokenIds;
  }
  if (prompt.text.length === 0) throw invalidArgument("prompt", "must not be empty");
  if (tokenizer === null)
    throw invalidArgument("prompt", "the model has no tokenizer (no tokenizer.json): send token ids");
  // Bound the work before tokenizing: a token is at least one character of text almost always,
  // and tokenizers cost time in proportion to the text.
  if (prompt.text.length > limits.maxModelLen * 64) {
    throw invalidArgument(
      "prompt",
      `${prompt.text.length} characters cannot fit the context of ${limits.maxModelLen} tokens`,
    );
  }
  const ids = tokenizer.encode(prompt.text);
  if (prompt.addBos !== false && tokenizer.bosId !== null) ids.unshift(tokenizer.bosId);
  if (ids.length === 0) throw invalidArgument("prompt", "tokenizes to no tokens");
  // The tokenizer's vocabulary may be larger than the model's (never in a sane checkpoint).
  checkTokenIds(ids, limits.vocabSize, "prompt");
  return ids;
}

function checkTokenIds(ids: readonly number[], vocabSize: number, field: string): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i] as number;
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw invalidArgument(
        field,
        `token id ${id} at index ${i} is outside the vocabulary [0, ${vocabSize})`,
      );
    }
  }
}

function checkStopStrings(stop: readonly string[], detokenize: boolean, noTokenizer: boolean): void {
  if (stop.length === 0) return;
  if (!detokenize) {
    throw invalidArgument(
      "sampling.stop",
      noTokenizer
        ? "stop strings need text, and the model has no tokenizer: use stop_token_ids"
        : "stop strings need text: not allowed with skip_detokenize",
    );
  }
  if (stop.length > MAX_STOP_STRINGS)
    throw invalidArgument("sampling.stop", `at most ${MAX_STOP_STRINGS} stop strings, got ${stop.length}`);
  stop.forEach((text, i) => {
    if (typeof text !== "string" || text.length === 0)
      throw invalidArgument("sampling.stop", `stop string ${i} is empty`);
    if (text.length > MAX_STOP_STRING_LENGTH)
      throw invalidArgument(
        "sampling.stop",
        `stop string ${i} is longer than ${MAX_STOP_STRING_LENGTH} characters`,
      );
  });
}
