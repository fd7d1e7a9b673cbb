/**
 * @expertmesh/router — the API front door. The generation interface every front end calls
 * (gRPC InferenceService, OpenAI-compatible HTTP, batch jobs) and the pieces that implement it.
 */
export type {
  FinishReason,
  GenerationChunk,
  GenerationPrompt,
  GenerationRequest,
  GenerationService,
  GenerationUsage,
  SamplingOptions,
  TokenLogprob,
} from "./core/generation.ts";
export { GenerationEngine } from "./core/generation-engine.ts";
export type {
  GenerationEngineOptions,
  GenerationObserver,
  RequestOutcome,
} from "./core/generation-engine.ts";
export { MAX_TOP_LOGPROBS, resolveRequest } from "./core/validate-request.ts";
export type { ModelLimits, ResolvedRequest, ResolvedSampling } from "./core/validate-request.ts";
export { loadRouterConfig, parseAttentionAddresses, routerConfig } from "./config.ts";
export type { RouterConfig } from "./config.ts";
