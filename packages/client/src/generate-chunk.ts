import { FinishReason as WireFinishReason } from "@expertmesh/proto";
import type { GenerateResponse, TokenLogprobs, Usage as WireUsage } from "@expertmesh/proto";
import { Code, ExpertMeshError } from "@expertmesh/shared";

/** Why a generation ended. */
export type FinishReason = "stop" | "length" | "cancelled" | "error";

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

/** Logprobs of one generated token. */
export interface TokenLogprob {
  tokenId: number;
  /** Natural-log probability of the chosen token (raw logits, before temperature). */
  logprob: number;
  /** Most likely alternatives, most likely first (empty unless topLogprobs was asked for). */
  top: { tokenId: number; logprob: number }[];
}

/** One piece of a streamed generation. */
export interface GenerateChunk {
  requestId: string;
  /** Tokens generated since the previous chunk. */
  tokenIds: number[];
  /** Text added since the previous chunk. */
  text: string;
  /** Parallel to tokenIds; empty unless logprobs or topLogprobs was asked for. */
  logprobs: TokenLogprob[];
  /** Set on the final chunk only. */
  finishReason?: FinishReason;
  /** Set on the final chunk only. */
  usage?: Usage;
}

/** A whole generation, as `complete` collects it. */
export interface Completion {
  requestId: string;
  tokenIds: number[];
  text: string;
  logprobs: TokenLogprob[];
  finishReason: FinishReason;
  usage: Usage;
}

const FINISH_REASONS: Readonly<Partial<Record<WireFinishReason, FinishReason>>> = {
  [WireFinishReason.STOP]: "stop",
  [WireFinishReason.LENGTH]: "length",
  [WireFinishReason.CANCELLED]: "cancelled",
  [WireFinishReason.ERROR]: "error",
};

export function toFinishReason(reason: WireFinishReason): FinishReason | undefined {
  return FINISH_REASONS[reason];
}

export function toUsage(usage: WireUsage | undefined): Usage {
  return { promptTokens: usage?.promptTokens ?? 0, completionTokens: usage?.completionTokens ?? 0 };
}

export function toTokenLogprobs(
  tokenIds: readonly number[],
  logprobs: readonly TokenLogprobs[],
): TokenLogprob[] {
  return logprobs.map((lp, i) => ({
    tokenId: tokenIds[i] ?? -1,
    logprob: lp.logprob,
    top: lp.topTokenIds.map((tokenId, j) => ({ tokenId, logprob: lp.topLogprobs[j] ?? Number.NaN })),
  }));
}

/** A wire chunk in the SDK's words. */
export function toGenerateChunk(response: GenerateResponse): GenerateChunk {
  const chunk: GenerateChunk = {
    requestId: response.requestId,
    tokenIds: response.tokenIds,
    text: response.text,
    logprobs: toTokenLogprobs(response.tokenIds, response.logprobs),
  };
  const finishReason = toFinishReason(response.finishReason);
  if (finishReason !== undefined) {
    chunk.finishReason = finishReason;
    chunk.usage = toUsage(response.usage);
  }
  return chunk;
}

/** Collects a stream into one Completion; a stream that ends without its final chunk is INTERNAL. */
export async function collectCompletion(
  chunks: AsyncIterable<GenerateChunk>,
  requestId: string,
): Promise<Completion> {
  const tokenIds: number[] = [];
  const logprobs: TokenLogprob[] = [];
  let text = "";
  for await (const chunk of chunks) {
    for (const id of chunk.tokenIds) tokenIds.push(id);
    for (const lp of chunk.logprobs) logprobs.push(lp);
    text += chunk.text;
    if (chunk.finishReason !== undefined) {
      return {
        requestId: chunk.requestId || requestId,
        tokenIds,
        text,
        logprobs,
        finishReason: chunk.finishReason,
        usage: chunk.usage ?? { promptTokens: 0, completionTokens: tokenIds.length },
      };
    }
  }
  throw new ExpertMeshError(Code.INTERNAL, `generation ${requestId} ended without a final chunk`);
}
