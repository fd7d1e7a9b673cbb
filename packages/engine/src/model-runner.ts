import type { LatentKvStore, ModelConfig } from "@expertmesh/model";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { Sampler, type SamplerOutput } from "./sampler.ts";
import type { ModelRunnerOutput, ScheduledSequence, SchedulerOutput } from "./scheduler-output.ts";

/** One sequence of a forward batch (the model's ForwardBatch entry, as the engine fills it). */
export interface ForwardSequence {
  seq: number;
  tokenIds: Int32Array;
  start: number;
  logits: "last" | "all";
}

/** The part of a loaded model the engine drives. */
export interface EngineModel {
  readonly config: ModelConfig;
  /** Logits of every sequence's last position: [sequences, vocab], in batch order. */
  forward(sequences: readonly ForwardSequence[], kv: LatentKvStore): Promise<Float32Array>;
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
    let logits: Float32Array | null = null;
    try {
      logits = await this.forward(batch);
    } catch (err) {
      if (batch.length === 1) failed.set(batch[0]!.request.requestId, asRequestError(err));
    }
    if (logits !== null) {
      this.sampleBatch(batch, logits, sampled, failed);
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

  private async forward(batch: readonly ScheduledSequence[]): Promise<Float32Array> {
    const sequences = batch.map((s) => ({ seq: s.request.seqId, tokenIds: s.tokenIds, start: s.start, logits: "last" as const }));
    const logits = await this.model.forward(sequences, this.kv);
    if (logits.length !== batch.length * this.vocabSize) {
      throw new ExpertMeshError(Code.INTERNAL, `model returned ${logits.length} logits for ${batch.length} rows of vocab ${this.vocabSize}`);
    }
    return logits;
  }

  /** `logits`: [batch.length, vocab]. */
  private sampleBatch(
    batch: readonly ScheduledSequence[],
    logits: Float32Array,
    sampled: Map<string, SamplerOutput>,
    failed: Map<string, ExpertMeshError>,
  ): void {
    const v = this.vocabSize;
    batch.forEach((s, row) => {
      if (!s.needsLogits) return;
      try {
        sampled.set(s.request.requestId, this.sampler.sample(logits.subarray(row * v, (row + 1) * v), s.request.sampling, s.request.rng));
      } catch (err) {
        failed.set(s.request.requestId, asRequestError(err));
      }
    });
  }
}

function asRequestError(err: unknown): ExpertMeshError {
  return ExpertMeshError.from(err);
}
