import type { MessageInitShape } from "@bufbuild/protobuf";
import type { GenerateRequestSchema, SamplingParamsSchema } from "@expertmesh/proto";
import { invalidArgument } from "@expertmesh/shared";

/**
 * One completion request, in the SDK's words. Every field but `prompt` is optional and its
 * absence means the server's default (greedy decoding up to the server's default length).
 */
export interface GenerateRequest {
  /** Text (tokenized by the router, no chat template applied) or token ids used as given. */
  prompt: string | readonly number[];
  /** Echoed in every chunk and in server logs; the client makes one up when absent, so every
   * attempt of a retried call carries the same id. */
  requestId?: string;
  /** Served model name; absent means the served model (another name is NOT_FOUND). */
  model?: string;
  /** Most tokens to generate; the context length always caps it. */
  maxTokens?: number;
  /** Softmax temperature in [0, 2]; 0 is greedy. */
  temperature?: number;
  /** Nucleus sampling mass in (0, 1]. */
  topP?: number;
  /** Keep only the top_k most likely tokens. */
  topK?: number;
  /** Drop tokens below minP × the most likely token's probability. */
  minP?: number;
  /** Sampler seed: the same seed, prompt and parameters give the same tokens. */
  seed?: number | bigint;
  /** Generation ends when the text contains one of these (not returned). */
  stop?: readonly string[];
  /** Generation ends after one of these tokens (returned as an id, its text is not). */
  stopTokenIds?: readonly number[];
  /** Keep generating past the model's EOS token (benchmarks). */
  ignoreEos?: boolean;
  /** Return each generated token's logprob. */
  logprobs?: boolean;
  /** Also return this many most likely alternatives per token, 0..20. */
  topLogprobs?: number;
  /** Token ids only, no text (skips detokenization; stop strings then cannot match). */
  skipDetokenize?: boolean;
}

const REQUEST_FIELDS: ReadonlySet<string> = new Set<keyof GenerateRequest>([
  "prompt",
  "requestId",
  "model",
  "maxTokens",
  "temperature",
  "topP",
  "topK",
  "minP",
  "seed",
  "stop",
  "stopTokenIds",
  "ignoreEos",
  "logprobs",
  "topLogprobs",
  "skipDetokenize",
]);

type GenerateRequestInit = MessageInitShape<typeof GenerateRequestSchema>;
type SamplingInit = MessageInitShape<typeof SamplingParamsSchema>;

const UINT32_MAX = 2 ** 32 - 1;
const UINT64_MAX = 2n ** 64n - 1n;

/**
 * The wire form of a request. Checks only what the wire would silently mangle (a token id that
 * is not a uint32, a fractional max_tokens, a seed out of uint64): ranges with a meaning
 * (temperature, top_p, ...) are the router's to judge, so there is one source of truth.
 */
export function toGenerateRequestProto(
  request: GenerateRequest,
  requestId: string,
  field = "request",
): GenerateRequestInit {
  // A misspelt field would otherwise be dropped silently (and the default used instead).
  for (const key of Object.keys(request)) {
    if (!REQUEST_FIELDS.has(key)) throw invalidArgument(`${field}.${key}`, "unknown field");
  }
  const { prompt } = request;
  let wirePrompt: GenerateRequestInit["prompt"];
  if (typeof prompt === "string") {
    wirePrompt = { case: "text", value: prompt };
  } else if (Array.isArray(prompt) || ArrayBuffer.isView(prompt)) {
    wirePrompt = { case: "tokenIds", value: { ids: uint32List(prompt, `${field}.prompt`) } };
  } else {
    throw invalidArgument(`${field}.prompt`, "must be a string or an array of token ids");
  }
  const sampling: SamplingInit = {
    temperature: request.temperature ?? 0,
    topP: request.topP ?? 0,
    topK: int32(request.topK, `${field}.topK`),
    maxTokens: uint32(request.maxTokens, `${field}.maxTokens`),
    stop: [...(request.stop ?? [])],
    stopTokenIds: uint32List(request.stopTokenIds ?? [], `${field}.stopTokenIds`),
    ignoreEos: request.ignoreEos ?? false,
  };
  if (request.minP !== undefined) sampling.minP = request.minP;
  if (request.seed !== undefined) sampling.seed = uint64(request.seed, `${field}.seed`);
  return {
    requestId,
    model: request.model ?? "",
    prompt: wirePrompt,
    sampling,
    logprobs: request.logprobs ?? false,
    topLogprobs: int32(request.topLogprobs, `${field}.topLogprobs`),
    skipDetokenize: request.skipDetokenize ?? false,
  };
}

function uint32List(values: readonly number[], field: string): number[] {
  const out = new Array<number>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (!Number.isInteger(v) || v < 0 || v > UINT32_MAX) {
      throw invalidArgument(field, `[${i}] must be an integer in [0, ${UINT32_MAX}], got ${v}`);
    }
    out[i] = v;
  }
  return out;
}

function uint32(value: number | undefined, field: string): number {
  if (value === undefined) return 0;
  if (!Number.isInteger(value) || value < 0 || value > UINT32_MAX) {
    throw invalidArgument(field, `must be an integer in [0, ${UINT32_MAX}], got ${value}`);
  }
  return value;
}

function int32(value: number | undefined, field: string): number {
  if (value === undefined) return 0;
  if (!Number.isInteger(value) || value < -(2 ** 31) || value > 2 ** 31 - 1) {
    throw invalidArgument(field, `must be a 32-bit integer, got ${value}`);
  }
  return value;
}

function uint64(value: number | bigint, field: string): bigint {
  if (typeof value === "number" && !Number.isSafeInteger(value)) {
    throw invalidArgument(field, `must be a non-negative safe integer or a bigint, got ${value}`);
  }
  const big = BigInt(value);
  if (big < 0n || big > UINT64_MAX) throw invalidArgument(field, `must be in [0, 2^64), got ${value}`);
  return big;
}
