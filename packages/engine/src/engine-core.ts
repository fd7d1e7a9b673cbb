import { Code, ExpertMeshError, invalidArgument } from "@expertmesh/shared";
import { EngineRequest, type FinishReason } from "./engine-request.ts";
import { KvBlockPool } from "./kv-block-pool.ts";
import { ModelRunner, type EngineModel } from "./model-runner.ts";
import type { SampleLogprobs } from "./sampler.ts";
import { compileSamplingParams, DEFAULT_MAX_LOGPROBS, type SamplingOptions } from "./sampling-params.ts";
import type { SchedulerOutput } from "./scheduler-output.ts";
import { Scheduler } from "./scheduler.ts";

export interface EngineCoreOptions {
  /** KV cache budget in bytes (default 1 GiB); or exactly `numKvBlocks` blocks. */
  kvCacheBytes?: number;
  numKvBlocks?: number;
  /** Tokens per KV block (default 16). */
  blockSize?: number;
  /** Token budget per step (default 2048). */
  maxNumBatchedTokens?: number;
  /** Most requests running at once (default 256). */
  maxNumSeqs?: number;
  /** Longest context (default: the model's max_position_embeddings). */
  maxModelLen?: number;
  /** Most top logprobs a request may ask for (default 20). */
  maxLogprobs?: number;
  /** 2: run steps with ≥ 2 sequences as two concurrent micro-batches (remote experts; see ModelRunnerOptions). */
  microBatches?: 1 | 2;
}

export interface AddRequestParams {
  requestId: string;
  promptTokenIds: ArrayLike<number>;
  sampling?: SamplingOptions;
}

/** What one step produced for one request (vLLM's EngineCoreOutput). */
export interface EngineCoreOutput {
  requestId: string;
  /** The token sampled this step (empty when the step only finished the request, e.g. abort). */
  newTokenIds: number[];
  /** One entry per new token, when the request asked for logprobs. */
  logprobs?: SampleLogprobs[];
  finishReason: FinishReason | null;
  /** Why the request failed, when finishReason is "error". */
  error?: ExpertMeshError;
  numPromptTokens: number;
  /** Tokens generated so far, this step's included. */
  numOutputTokens: number;
}

/** The shape of one step, for metrics and tests. */
export interface StepStats {
  numScheduledTokens: number;
  numDecodeSeqs: number;
  numPrefillSeqs: number;
  /** Request ids in batch order (decodes first), with the tokens each contributed. */
  composition: Array<{ requestId: string; numTokens: number; isPrefill: boolean }>;
  preemptedRequestIds: readonly string[];
  numRunning: number;
  numWaiting: number;
  kvUsedBlocks: number;
  /** Wall time of forward + sampling. */
  executeMs: number;
}

export interface EngineCoreOutputs {
  outputs: EngineCoreOutput[];
  /** null when nothing was scheduled (only aborts were applied, or nothing to do). */
  stats: StepStats | null;
}

const DEFAULTS = {
  kvCacheBytes: 1 << 30,
  blockSize: 16,
  maxNumBatchedTokens: 2048,
  maxNumSeqs: 256,
};

/**
 * The engine loop without any process or async plumbing (vLLM v1's EngineCore): add and
 * abort requests, and `step()` — schedule, run the model on the batch, sample, update — which
 * returns what each request got. One request's failure (bad logits, a model error that
 * reproduces when it runs alone) finishes that request with "error" and nothing else.
 */
export class EngineCore {
  readonly pool: KvBlockPool;
  readonly scheduler: Scheduler;
  readonly vocabSize: number;
  private readonly runner: ModelRunner;
  private readonly maxLogprobs: number;
  private readonly pendingAborts = new Set<string>();
  private nextSeqId = 0;
  private stepping = false;

  constructor(model: EngineModel, options: EngineCoreOptions = {}) {
    const config = model.config;
    this.vocabSize = config.vocabSize;
    this.maxLogprobs = options.maxLogprobs ?? DEFAULT_MAX_LOGPROBS;
    const blockSize = options.blockSize ?? DEFAULTS.blockSize;
    this.pool = new KvBlockPool({
      numLayers: config.numLayers,
      rowSize: config.kvLoraRank + config.qkRopeHeadDim,
      blockSize,
      ...(options.numKvBlocks !== undefined
        ? { numBlocks: options.numKvBlocks }
        : { memoryBytes: options.kvCacheBytes ?? DEFAULTS.kvCacheBytes }),
    });
    const maxModelLen = options.maxModelLen ?? config.maxPositionEmbeddings;
    if (maxModelLen > config.maxPositionEmbeddings) {
      throw invalidArgument(
        "maxModelLen",
        `${maxModelLen} exceeds the model's max_position_embeddings ${config.maxPositionEmbeddings}`,
      );
    }
    this.scheduler = new Scheduler(this.pool, {
      maxNumBatchedTokens: options.maxNumBatchedTokens ?? DEFAULTS.maxNumBatchedTokens,
      maxNumSeqs: options.maxNumSeqs ?? DEFAULTS.maxNumSeqs,
      maxModelLen,
      eosTokenId: config.eosTokenId,
    });
    this.runner = new ModelRunner(
      model,
      this.pool,
      options.microBatches === undefined ? {} : { microBatches: options.microBatches },
    );
  }

  /** Queues a request; bad input throws INVALID_ARGUMENT, a request the cache could never hold RESOURCE_EXHAUSTED. */
  addRequest(params: AddRequestParams): void {
    const { requestId } = params;
    if (typeof requestId !== "string" || requestId.length === 0)
      throw invalidArgument("requestId", "must be a non-empty string");
    if (this.scheduler.getRequest(requestId) !== undefined) {
      throw new ExpertMeshError(Code.ALREADY_EXISTS, `request '${requestId}' is already running`, {
        details: { field: "requestId" },
      });
    }
    const sampling = compileSamplingParams(params.sampling ?? {}, {
      vocabSize: this.vocabSize,
      maxLogprobs: this.maxLogprobs,
    });
    const prompt = Int32Array.from(params.promptTokenIds);
    if (prompt.length === 0) throw invalidArgument("promptTokenIds", "must not be empty");
    for (let i = 0; i < prompt.length; i++) {
      const t = params.promptTokenIds[i]!;
      if (!Number.isInteger(t) || t < 0 || t >= this.vocabSize) {
        throw invalidArgument(
          "promptTokenIds",
          `token ${t} at index ${i} is not in the vocabulary [0, ${this.vocabSize})`,
        );
      }
    }
    const { maxModelLen } = this.scheduler.options;
    if (prompt.length >= maxModelLen) {
      throw invalidArgument(
        "promptTokenIds",
        `prompt of ${prompt.length} tokens leaves no room to generate within max model length ${maxModelLen}`,
      );
    }
    const needed = this.scheduler.maxTokensNeeded(prompt.length, sampling.maxTokens);
    const neededBlocks = Math.ceil(needed / this.pool.blockSize);
    if (neededBlocks > this.pool.numBlocks) {
      throw new ExpertMeshError(
        Code.RESOURCE_EXHAUSTED,
        `request needs up to ${needed} tokens of KV cache (${neededBlocks} blocks); the whole cache has ${this.pool.numBlocks}`,
      );
    }
    this.scheduler.addRequest(new EngineRequest(requestId, this.nextSeqId++, prompt, sampling));
  }

  /** Aborts a request at the next step boundary (its blocks are never freed under a running forward). */
  abort(requestId: string): boolean {
    if (this.scheduler.getRequest(requestId) === undefined) return false;
    this.pendingAborts.add(requestId);
    return true;
  }

  hasUnfinishedRequests(): boolean {
    return this.scheduler.hasUnfinishedRequests;
  }

  /** One engine iteration. Not reentrant: await each step before the next. */
  async step(): Promise<EngineCoreOutputs> {
    if (this.stepping)
      throw new ExpertMeshError(Code.FAILED_PRECONDITION, "EngineCore.step called while a step is running");
    this.stepping = true;
    try {
      const outputs = this.applyAborts();
      const schedulerOutput = this.scheduler.schedule();
      if (schedulerOutput.scheduled.length === 0) return { outputs, stats: null };
      const t0 = performance.now();
      const runnerOutput = await this.runner.execute(schedulerOutput);
      const executeMs = performance.now() - t0;
      // Aborts that arrived during the forward land before its results are applied.
      outputs.push(...this.applyAborts());
      const update = this.scheduler.updateFromOutput(schedulerOutput, runnerOutput);
      const byRequest = new Map<string, EngineCoreOutput>();
      for (const { request, tokenId } of update.newTokens) {
        const logprobs = runnerOutput.sampled.get(request.requestId)?.logprobs;
        byRequest.set(request.requestId, {
          requestId: request.requestId,
          newTokenIds: [tokenId],
          ...(logprobs !== undefined ? { logprobs: [logprobs] } : {}),
          finishReason: request.finishReason,
          numPromptTokens: request.numPromptTokens,
          numOutputTokens: request.outputTokenIds.length,
        });
      }
      for (const request of update.finished) {
        if (byRequest.has(request.requestId)) continue;
        const error = runnerOutput.failed.get(request.requestId);
        byRequest.set(request.requestId, {
          requestId: request.requestId,
          newTokenIds: [],
          finishReason: request.finishReason,
          ...(error !== undefined ? { error } : {}),
          numPromptTokens: request.numPromptTokens,
          numOutputTokens: request.outputTokenIds.length,
        });
      }
      outputs.push(...byRequest.values());
      return { outputs, stats: this.stats(schedulerOutput, executeMs) };
    } finally {
      this.stepping = false;
    }
  }

  private applyAborts(): EngineCoreOutput[] {
    const outputs: EngineCoreOutput[] = [];
    for (const requestId of this.pendingAborts) {
      const request = this.scheduler.finishRequest(requestId, "abort");
      if (request === undefined) continue;
      outputs.push({
        requestId,
        newTokenIds: [],
        finishReason: "abort",
        numPromptTokens: request.numPromptTokens,
        numOutputTokens: request.outputTokenIds.length,
      });
    }
    this.pendingAborts.clear();
    return outputs;
  }

  private stats(out: SchedulerOutput, executeMs: number): StepStats {
    return {
      numScheduledTokens: out.numScheduledTokens,
      numDecodeSeqs: out.numDecodeSeqs,
      numPrefillSeqs: out.numPrefillSeqs,
      composition: out.scheduled.map((s) => ({
        requestId: s.request.requestId,
        numTokens: s.tokenIds.length,
        isPrefill: s.isPrefill,
      })),
      preemptedRequestIds: out.preemptedRequestIds,
      numRunning: this.scheduler.numRunning,
      numWaiting: this.scheduler.numWaiting,
      kvUsedBlocks: this.pool.usedBlocks,
      executeMs,
    };
  }
}
