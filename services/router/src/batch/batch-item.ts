/**
 * One item of a batch job: its generation at priority "batch", collected whole, with retries.
 * Unlike a client's stream, a batch item can be retried even after tokens were generated: the
 * partial output was never delivered, the next attempt starts over.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { FinishReason as WireFinishReason } from "@expertmesh/proto";
import type { GenerateRequest, TokenLogprobsSchema } from "@expertmesh/proto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ExpertMeshError, isRetryable, toWireStatus } from "@expertmesh/shared";
import type { FinishReason, GenerationRequest, GenerationService } from "../core/generation.ts";
import { decodeGenerateRequest } from "../server/inference-service.ts";
import type { CompiledBatchOptions } from "./batch-options.ts";
import type { BatchItemResultInit } from "./batch-store.ts";

export type BatchItemOutcome =
  | { readonly kind: "completed" | "failed"; readonly result: BatchItemResultInit }
  /** The job was cancelled or stopped while the item ran: nothing to record. */
  | { readonly kind: "aborted" };

export interface BatchItem {
  readonly batchId: string;
  readonly index: number;
  readonly request: GenerateRequest;
  readonly maxAttempts: number;
}

const FINISH_REASON: Readonly<Record<FinishReason, WireFinishReason>> = {
  stop: WireFinishReason.STOP,
  length: WireFinishReason.LENGTH,
  cancelled: WireFinishReason.CANCELLED,
  error: WireFinishReason.ERROR,
};

/** The request id of an item: its own, or "<batch_id>-<index>". */
export function itemRequestId(batchId: string, index: number, request: GenerateRequest): string {
  return request.requestId === "" ? `${batchId}-${index}` : request.requestId;
}

/**
 * The item as GenerationService takes it, at priority "batch". Throws what a bad item deserves
 * (INVALID_ARGUMENT, NOT_FOUND for a model not served).
 */
export function toBatchGenerationRequest(
  item: Omit<BatchItem, "maxAttempts">,
  servedModel: string,
  deadline: number | undefined,
): GenerationRequest {
  const request = decodeGenerateRequest(item.request, servedModel, deadline);
  return { ...request, requestId: itemRequestId(item.batchId, item.index, item.request), priority: "batch" };
}

/**
 * The wait before attempt `attempt + 1`: base × 2^(attempt−1), capped, ±20% jitter; the base is
 * longer after RESOURCE_EXHAUSTED (the cluster is overloaded: batch work backs off first).
 */
export function itemBackoffMs(
  options: CompiledBatchOptions,
  attempt: number,
  code: Code,
  random = Math.random,
): number {
  const base = code === Code.RESOURCE_EXHAUSTED ? options.overloadBackoffMs : options.retryBackoffMs;
  const delay = Math.min(Math.max(options.maxBackoffMs, base), base * 2 ** (attempt - 1));
  return delay * (0.8 + 0.4 * random());
}

/** Runs one item to a result (completed or failed for good), or "aborted" when `signal` aborts. */
export async function runBatchItem(
  item: BatchItem,
  generation: GenerationService,
  options: CompiledBatchOptions,
  signal: AbortSignal,
): Promise<BatchItemOutcome> {
  const requestId = itemRequestId(item.batchId, item.index, item.request);
  let lastError = new ExpertMeshError(Code.INTERNAL, "no attempt was made");
  let attempt = 0;
  while (attempt < item.maxAttempts) {
    attempt++;
    if (signal.aborted) return { kind: "aborted" };
    try {
      const result = await attemptItem(item, generation, options, signal);
      if (result === undefined) return { kind: "aborted" };
      return { kind: "completed", result: { ...result, index: item.index, requestId, attempts: attempt } };
    } catch (error) {
      if (signal.aborted) return { kind: "aborted" };
      lastError = ExpertMeshError.from(error);
      if (!isRetryable(lastError.code) || attempt >= item.maxAttempts) break;
      try {
        await sleep(itemBackoffMs(options, attempt, lastError.code), undefined, { signal });
      } catch {
        // The job was cancelled or stopped during the wait.
        return { kind: "aborted" };
      }
    }
  }
  const wire = toWireStatus(lastError);
  return {
    kind: "failed",
    result: {
      index: item.index,
      requestId,
      finishReason: WireFinishReason.ERROR,
      error: { code: wire.code, message: wire.message, details: wire.details },
      attempts: attempt,
    },
  };
}

/**
 * One attempt: the whole generation, or undefined when the job's signal aborted it. Its own
 * deadline (itemTimeoutMs) aborts only this attempt, as DEADLINE_EXCEEDED.
 */
async function attemptItem(
  item: BatchItem,
  generation: GenerationService,
  options: CompiledBatchOptions,
  jobSignal: AbortSignal,
): Promise<BatchItemResultInit | undefined> {
  const deadline = Date.now() + options.itemTimeoutMs;
  const request = toBatchGenerationRequest(item, generation.model.name, deadline);
  const attempt = new AbortController();
  const timer = setTimeout(
    () =>
      attempt.abort(
        new ExpertMeshError(
          Code.DEADLINE_EXCEEDED,
          `batch item exceeded its ${options.itemTimeoutMs} ms deadline`,
        ),
      ),
    options.itemTimeoutMs,
  );
  const onJobAbort = (): void => attempt.abort(jobSignal.reason);
  jobSignal.addEventListener("abort", onJobAbort, { once: true });
  try {
    const tokenIds: number[] = [];
    const logprobs: MessageInitShape<typeof TokenLogprobsSchema>[] = [];
    let text = "";
    for await (const chunk of generation.generate(request, attempt.signal)) {
      for (const id of chunk.tokenIds) tokenIds.push(id);
      for (const lp of chunk.logprobs ?? []) {
        logprobs.push({
          logprob: lp.logprob,
          topTokenIds: lp.top.map((t) => t.tokenId),
          topLogprobs: lp.top.map((t) => t.logprob),
        });
      }
      text += chunk.text;
      if (chunk.finishReason === undefined) continue;
      if (chunk.finishReason === "cancelled") {
        if (jobSignal.aborted) return undefined;
        // Our own deadline, or the router cancelling it (shutting down): another attempt may do.
        throw attempt.signal.aborted
          ? ExpertMeshError.from(attempt.signal.reason)
          : new ExpertMeshError(Code.ABORTED, "the generation was cancelled by the router");
      }
      if (chunk.finishReason === "error") throw new ExpertMeshError(Code.INTERNAL, "the generation failed");
      return {
        tokenIds,
        text,
        logprobs,
        finishReason: FINISH_REASON[chunk.finishReason],
        usage: chunk.usage ?? { promptTokens: 0, completionTokens: tokenIds.length },
      };
    }
    if (jobSignal.aborted) return undefined;
    throw new ExpertMeshError(Code.INTERNAL, "the generation ended without a final chunk");
  } catch (error) {
    if (jobSignal.aborted) return undefined;
    // An abort by our own deadline surfaces as whatever the generation threw on abort.
    if (attempt.signal.aborted) throw ExpertMeshError.from(attempt.signal.reason);
    throw error;
  } finally {
    clearTimeout(timer);
    jobSignal.removeEventListener("abort", onJobAbort);
  }
}
