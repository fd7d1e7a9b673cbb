import type { ForwardBatch, ForwardResult, LatentKvStore, ModelConfig } from "@expertmesh/model";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { Sampler, type SamplerOutput } from "./sampler.ts";
import type { ModelRunnerOutput, ScheduledSequence, SchedulerOutput } from "./scheduler-output.ts";

/** The part of a loaded model (DeepSeekModel) the engine drives. */
export interface EngineModel {
  readonly config: ModelConfig;
  forward(batch: ForwardBatch, kv: LatentKvStore): Promise<ForwardResult>;
}

/**
 * Runs a SchedulerOutput: one forward over the whole batch, then sampling of each sequence
 * whose chunk ends at its newest token. A failing batch is retried one sequence at a time so
 * that the failure is pinned on the request that causes it (rewriting KV rows is harmless:
 * the same positions get the same values); only that request is reported failed.
 */
export class ModelRunner {
  private readonly model: EngineModel;
  private readonly kv: LatentKvStore;
  private readonly sampler: Sampler;
  private readonly vocabSize: number;

  constructor(model: EngineModel, kv: LatentKvStore) {
    this.model = model;
    this.kv = kv;
    this.vocabSize = model.config.vocabSize;
    this.sampler = new Sampler(this.vocabSize);
  }

  async execute(output: SchedulerOutput): Promise<ModelRunnerOutput> {
    const sampled = new Map<string, SamplerOutput>();
    const failed = new Map<string, ExpertMeshError>();
    const batch = output.scheduled;
    let result: ForwardResult | null = null;
    try {
      result = await this.forward(batch);
    } catch (err) {
      if (batch.length === 1) failed.set(batch[0]!.request.requestId, asRequestError(err));
    }
    if (result !== null) {
      this.sampleBatch(batch, result, sampled, failed);
    } else if (batch.length > 1) {
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
    const sequences = batch.map((s) => ({ seq: s.request.seqId, tokens: s.tokenIds, start: s.start, logits: s.needsLogits ? ("last" as const) : ("none" as const) }));
    const result = await this.model.forward({ sequences }, this.kv);
    const rows = batch.reduce((n, s) => n + (s.needsLogits ? 1 : 0), 0);
    if (result.logits.length !== rows * this.vocabSize || result.logitOffsets.length !== batch.length + 1) {
      throw new ExpertMeshError(Code.INTERNAL, `model returned ${result.logits.length} logits for ${rows} rows of vocab ${this.vocabSize}`);
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
        sampled.set(s.request.requestId, this.sampler.sample(result.logits.subarray(row * v, (row + 1) * v), s.request.sampling, s.request.rng));
      } catch (err) {
        failed.set(s.request.requestId, asRequestError(err));
      }
    });
  }
}

function asRequestError(err: unknown): ExpertMeshError {
  return ExpertMeshError.from(err);
}
