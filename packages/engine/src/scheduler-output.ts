import type { ExpertMeshError } from "@expertmesh/shared";
import type { EngineRequest } from "./engine-request.ts";
import type { SamplerOutput } from "./sampler.ts";

/** One sequence's share of a step: `tokenIds` at positions [start, start + tokenIds.length). */
export interface ScheduledSequence {
  readonly request: EngineRequest;
  /** New tokens to run through the model: [n]. */
  readonly tokenIds: Int32Array;
  readonly start: number;
  /** The chunk reaches the end of the known tokens: the last position's logits are sampled. */
  readonly needsLogits: boolean;
  /** Prompt (or recompute) chunk rather than one generated token. */
  readonly isPrefill: boolean;
}

/** What the scheduler decided for one step (vLLM's SchedulerOutput). */
export interface SchedulerOutput {
  /** Decodes first, then prefill chunks. */
  readonly scheduled: readonly ScheduledSequence[];
  readonly numScheduledTokens: number;
  readonly numDecodeSeqs: number;
  readonly numPrefillSeqs: number;
  /** Requests preempted (blocks freed, back to waiting for recompute) in this step. */
  readonly preemptedRequestIds: readonly string[];
}

/** What running a SchedulerOutput through the model and the sampler produced (vLLM's ModelRunnerOutput). */
export interface ModelRunnerOutput {
  /** requestId → the sampled token (and logprobs), for every scheduled sequence that needed logits. */
  readonly sampled: ReadonlyMap<string, SamplerOutput>;
  /** requestId → why that request failed in this step; the others are unaffected. */
  readonly failed: ReadonlyMap<string, ExpertMeshError>;
}
