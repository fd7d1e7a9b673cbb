import type { ForwardBatch, ForwardResult, LatentKvStore, ModelConfig } from "@expertmesh/model";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { Sampler, type SamplerOutput } from "./sampler.ts";
import type { ModelRunnerOutput, ScheduledSequence, SchedulerOutput } from "./scheduler-output.ts";

/** The part of a loaded model (DeepSeekModel) the engine drives. */
export interface EngineModel {
  readonly config: ModelConfig;
  forward(batch: ForwardBatch, kv: LatentKvStore): Promise<ForwardResult>;
}

export interface ModelRunnerOptions {
  /**
   * 2: a step with ≥ 2 sequences runs as two micro-batches (disjoint halves of its sequences, split
   * by token count) whose forwards run concurrently, so one half's attention computes while the
   * other's rows are away at remote expert-workers (DESIGN.md's ping-pong). Only worth it when
   * the model's routed experts are remote; outputs are the same as with 1. Default 1.
   */
  microBatches?: 1 | 2;
}

/**
 * Runs a SchedulerOutput: one forward over the whole batch (or two concurrent ones over its
 * halves), then sampling of each sequence whose chunk ends at its newest token. A failing batch
 * is retried one sequence at a time so that the failure is pinned on the request that causes it
 * (rewriting KV rows is harmless: the same positions get the same values); only that request is
 * reported failed.
 */
export class ModelRunner {
  private readonly model: EngineModel;
  private readonly kv: LatentKvStore;
  private readonly sampler: Sampler;
  private readonly vocabSize: number;
  readonly microBatches: 1 | 2;

  constructor(model: EngineModel, kv: LatentKvStore, options: ModelRunnerOptions = {}) {
    this.model = model;
    this.kv = kv;
    this.vocabSize = model.config.vocabSize;
    this.sampler = new Sampler(this.vocabSize);
    const mb = options.microBatches ?? 1;
    if (mb !== 1 && mb !== 2)
      throw new ExpertMeshError(Code.INVALID_ARGUMENT, `microBatches must be 1 or 2, got ${String(mb)}`);
    this.microBatches = mb;
  }

  async execute(output: SchedulerOutput): Promise<ModelRunnerOutput> {
    const sampled = new Map<string, SamplerOutput>();
    const failed = new Map<string, ExpertMeshError>();
    const batch = output.scheduled;
    const halves = this.microBatches === 2 ? splitInTwo(batch) : null;
    let ok = false;
    if (halves !== null) {
      // Both forwards start before either is awaited: they interleave at each MoE layer's await.
      const results = await Promise.allSettled(halves.map((h) => this.forward(h)));
      if (results.every((r) => r.status === "fulfilled")) {
        halves.forEach((h, i) =>
          this.sampleBatch(h, (results[i] as PromiseFulfilledResult<ForwardResult>).value, sampled, failed),
        );
        ok = true;
      }
    } else {
      let result: ForwardResult | null = null;
      try {
        result = await this.forward(batch);
      } catch (err) {
        if (batch.length === 1) failed.set(batch[0]!.request.requestId, asRequestError(err));
      }
      if (result !== null) {
        this.sampleBatch(batch, result, sampled, failed);
        ok = true;
      }
    }
    if (!ok && batch.length > 1) {
      for (const s of batch) {
        try {
          this.sampleBatch([s], await this.forward([s]), sampled, failed);
        } catch (err) {
          failed.set(s.request.requestId, asRequestError(err));
        }
      }
    }
    return { sampled, failed };
  }

  /** Mid-prompt chunks want no logits; a chunk that reaches the newest token wants its last row. */
  private async forward(batch: readonly ScheduledSequence[]): Promise<ForwardResult> {
    const sequences = batch.map((s) => ({
      seq: s.request.seqId,
      tokens: s.tokenIds,
      start: s.start,
      logits: s.needsLogits ? ("last" as const) : ("none" as const),
    }));
    const result = await this.model.forward({ sequences }, this.kv);
    const rows = batch.reduce((n, s) => n + (s.needsLogits ? 1 : 0), 0);
    if (result.logits.length !== rows * this.vocabSize || result.logitOffsets.length !== batch.length + 1) {
      throw new ExpertMeshError(
        Code.INTERNAL,
        `model returned ${result.logits.length} logits for ${rows} rows of vocab ${this.vocabSize}`,
      );
    }
    return result;
  }

  /** `result.logits`: [rows wanted, vocab]; sequence i's row is logitOffsets[i]. */
  private sampleBatch(
    batch: readonly ScheduledSequence[],
    result: ForwardResult,
    sampled: Map<string, SamplerOutput>,
    failed: Map<string, ExpertMeshError>,
  ): void {
    const v = this.vocabSize;
    batch.forEach((s, i) => {
      if (!s.needsLogits) return;
      const row = result.logitOffsets[i]!;
      try {
        sampled.set(
          s.request.requestId,
          this.sampler.sample(
            result.logits.subarray(row * v, (row + 1) * v),
            s.request.sampling,
            s.request.rng,
          ),
        );
      } catch (err) {
        failed.set(s.request.requestId, asRequestError(err));
      }
    });
  }
}

/**
 * Two non-empty contiguous halves of a batch with about equal token counts (the split point is
 * where the running count first reaches half), or null when it has fewer than 2 sequences.
 */
export function splitInTwo(
  batch: readonly ScheduledSequence[],
): [ScheduledSequence[], ScheduledSequence[]] | null {
  if (batch.length < 2) return null;
  const total = batch.reduce((n, s) => n + s.tokenIds.length, 0);
  let cut = 1;
  let acc = batch[0]!.tokenIds.length;
  while (cut < batch.length - 1 && acc * 2 < total) acc += batch[cut++]!.tokenIds.length;
  return [batch.slice(0, cut), batch.slice(cut)];
}

function asRequestError(err: unknown): ExpertMeshError {
  return ExpertMeshError.from(err);
}
