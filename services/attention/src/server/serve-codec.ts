/**
 * AttentionService.Serve messages ↔ the core's words: AddSequence → SequenceRequest (proto
 * sampling defaults resolved into engine options), SessionOutput → one packed ServeResponse.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { FinishReason } from "@expertmesh/proto";
import type { AddSequence, ServeResponseSchema } from "@expertmesh/proto";
import { invalidArgument, toWireStatus } from "@expertmesh/shared";
import type { SequenceEndReason, SequenceRequest, SessionOutput } from "../core/session-output.ts";

export type ServeResponseInit = MessageInitShape<typeof ServeResponseSchema>;

const SEED_RANGE = 2n ** 53n;

/** Decodes one AddSequence; INVALID_ARGUMENT (naming the field) for values the engine would misread. */
export function decodeAddSequence(add: AddSequence, defaultMaxTokens: number): SequenceRequest {
  const s = add.sampling;
  const topK = s?.topK ?? 0;
  if (topK < 0) throw invalidArgument("sampling.top_k", `must be ≥ 0 (0 disables it), got ${topK}`);
  const temperature = s?.temperature ?? 0;
  if (!(temperature >= 0 && temperature <= 2))
    throw invalidArgument("sampling.temperature", `must be in [0, 2], got ${temperature}`);
  const topP = s?.topP ?? 0;
  if (!(topP >= 0 && topP <= 1))
    throw invalidArgument("sampling.top_p", `must be in (0, 1] (0 disables it), got ${topP}`);
  if (add.topLogprobs < 0)
    throw invalidArgument("top_logprobs", `must be in [0, 20], got ${add.topLogprobs}`);
  return {
    sequenceId: add.sequenceId,
    requestId: add.requestId,
    promptTokenIds: add.promptTokenIds,
    sampling: {
      temperature,
      topK,
      topP: topP === 0 ? 1 : topP,
      ...(s?.minP === undefined ? {} : { minP: s.minP }),
      // The engine's PRNG folds any safe integer into its state; wider seeds are reduced first.
      ...(s?.seed === undefined ? {} : { seed: Number(s.seed % SEED_RANGE) }),
      maxTokens: s === undefined || s.maxTokens === 0 ? defaultMaxTokens : s.maxTokens,
      stopTokenIds: s?.stopTokenIds ?? [],
      ignoreEos: s?.ignoreEos ?? false,
    },
    logprobs: add.logprobs,
    topLogprobs: add.topLogprobs,
    timeoutMs: add.timeoutMs,
  };
}

const FINISH_REASON: Readonly<Record<SequenceEndReason, FinishReason>> = {
  stop: FinishReason.STOP,
  length: FinishReason.LENGTH,
  cancelled: FinishReason.CANCELLED,
  error: FinishReason.ERROR,
};

/** One step's output for one stream as a ServeResponse: parallel packed arrays, then finishes. */
export function encodeSessionOutput(output: SessionOutput): ServeResponseInit {
  const n = output.tokens.length;
  const sequenceIds = new Array<number>(n);
  const tokenIds = new Array<number>(n);
  const anyLogprob = output.tokens.some((t) => t.logprob !== undefined);
  const anyTop = output.tokens.some((t) => t.top.length > 0);
  const logprobs: number[] = [];
  const topCounts: number[] = [];
  const topTokenIds: number[] = [];
  const topLogprobs: number[] = [];
  output.tokens.forEach((t, i) => {
    sequenceIds[i] = t.sequenceId;
    tokenIds[i] = t.tokenId;
    if (anyLogprob) logprobs.push(t.logprob ?? 0);
    if (anyTop) {
      topCounts.push(t.top.length);
      for (const alt of t.top) {
        topTokenIds.push(alt.tokenId);
        topLogprobs.push(alt.logprob);
      }
    }
  });
  return {
    sequenceIds,
    tokenIds,
    logprobs,
    topCounts,
    topTokenIds,
    topLogprobs,
    finishes: output.finishes.map((f) => {
      const usage = { promptTokens: f.promptTokens, completionTokens: f.completionTokens };
      if (f.error === undefined)
        return { sequenceId: f.sequenceId, finishReason: FINISH_REASON[f.reason], usage };
      const status = toWireStatus(f.error);
      return {
        sequenceId: f.sequenceId,
        finishReason: FINISH_REASON[f.reason],
        usage,
        error: { code: status.code, message: status.message, details: { ...status.details } },
      };
    }),
  };
}
