import { invalidArgument } from "@expertmesh/shared";
import { checkStop } from "./check-stop.ts";
import type { EngineRequest, FinishReason } from "./engine-request.ts";
import type { KvBlockAllocator } from "./kv-block-pool.ts";
import type { ModelRunnerOutput, ScheduledSequence, SchedulerOutput } from "./scheduler-output.ts";

export interface SchedulerOptions {
  /** Token budget of one step (decode tokens + prefill chunk tokens). */
  maxNumBatchedTokens: number;
  /** Most requests running (holding KV blocks) at once. */
  maxNumSeqs: number;
  /** Most positions a sequence may reach (prompt + generated). */
  maxModelLen: number;
  /** The model's end-of-sequence token (null: none). */
  eosTokenId: number | null;
}

/** What `updateFromOutput` did with one step's results. */
export interface SchedulerUpdate {
  /** Requests that got a token this step, with it (finished ones included). */
  readonly newTokens: ReadonlyArray<{ request: EngineRequest; tokenId: number }>;
  /** Requests that finished this step; their blocks are back in the pool. */
  readonly finished: readonly EngineRequest[];
}

/**
 * Continuous batching over a paged KV cache, with no model and no I/O (vLLM v1's scheduler).
 * A step's token budget goes first to one decode token per running request, then to prefill
 * chunks of running requests whose prompt is not done, then to admitting waiting requests (FCFS).
 * A waiting request is admitted only when the pool can hold all of its known tokens at once,
 * so a prefill never runs out of blocks halfway; a decode that cannot get a block preempts the
 * newest running request not yet scheduled in this step (recompute: its blocks are freed and it
 * goes back to the front of the waiting queue with its generated tokens kept).
 */
export class Scheduler {
  readonly options: Readonly<SchedulerOptions>;
  private readonly kv: KvBlockAllocator;
  private readonly requests = new Map<string, EngineRequest>();
  /** FCFS; preempted requests re-enter at the front. */
  private waiting: EngineRequest[] = [];
  /** Admission order: the newest is last (the preemption victim). */
  private running: EngineRequest[] = [];

  constructor(kv: KvBlockAllocator, options: SchedulerOptions) {
    if (!Number.isInteger(options.maxNumBatchedTokens) || options.maxNumBatchedTokens < 1) {
      throw invalidArgument("maxNumBatchedTokens", "must be a positive integer");
    }
    if (!Number.isInteger(options.maxNumSeqs) || options.maxNumSeqs < 1)
      throw invalidArgument("maxNumSeqs", "must be a positive integer");
    if (!Number.isInteger(options.maxModelLen) || options.maxModelLen < 2)
      throw invalidArgument("maxModelLen", "must be an integer ≥ 2");
    this.kv = kv;
    this.options = { ...options };
  }

  get numWaiting(): number {
    return this.waiting.length;
  }

  get numRunning(): number {
    return this.running.length;
  }

  get hasUnfinishedRequests(): boolean {
    return this.requests.size > 0;
  }

  getRequest(requestId: string): EngineRequest | undefined {
    return this.requests.get(requestId);
  }

  /**
   * Tokens a request may ever need to hold at once: its prompt plus every token it may generate
   * (minus the last, which is never fed back), capped by maxModelLen. A request whose need
   * exceeds the whole pool could never finish; the owner rejects it before `addRequest`.
   */
  maxTokensNeeded(numPromptTokens: number, maxTokens: number): number {
    return Math.min(numPromptTokens + maxTokens - 1, this.options.maxModelLen);
  }

  addRequest(request: EngineRequest): void {
    if (this.requests.has(request.requestId))
      throw invalidArgument("requestId", `'${request.requestId}' is already in the scheduler`);
    request.status = "waiting";
    this.requests.set(request.requestId, request);
    this.waiting.push(request);
  }

  /** Ends a request now (abort, error): frees its blocks. Undefined when it is not (or no longer) here. */
  finishRequest(requestId: string, reason: FinishReason): EngineRequest | undefined {
    const request = this.requests.get(requestId);
    if (request === undefined) return undefined;
    this.finish(request, reason);
    return request;
  }

  schedule(): SchedulerOutput {
    const { maxNumBatchedTokens, maxNumSeqs } = this.options;
    let budget = maxNumBatchedTokens;
    const decodes: ScheduledSequence[] = [];
    const prefills: ScheduledSequence[] = [];
    const scheduled = new Set<EngineRequest>();
    const preempted: string[] = [];

    // 1. One token for every running request whose prompt is done, oldest first.
    for (const request of [...this.running]) {
      if (budget === 0) break;
      if (request.status !== "running" || request.numTokens - request.numComputedTokens !== 1) continue;
      if (request.numComputedTokens < request.numPromptTokens) continue; // a 1-token prompt chunk is a prefill
      if (!this.reserveOrPreempt(request, request.numComputedTokens + 1, scheduled, preempted)) continue;
      decodes.push(this.take(request, 1, scheduled));
      budget -= 1;
    }

    // 2. Next chunk of running requests still prefilling (their blocks were reserved at admission).
    for (const request of this.running) {
      if (budget === 0) break;
      if (scheduled.has(request)) continue;
      const remaining = request.numTokens - request.numComputedTokens;
      if (remaining < 1) continue;
      const n = Math.min(remaining, budget);
      prefills.push(this.take(request, n, scheduled));
      budget -= n;
    }

    // 3. Admit waiting requests, FCFS, unless this step already had to preempt (memory is tight).
    while (preempted.length === 0 && budget > 0 && this.running.length < maxNumSeqs) {
      const request = this.waiting[0];
      if (request === undefined) break;
      if (!this.kv.ensureCapacity(request.seqId, request.numTokens)) break;
      this.waiting.shift();
      request.status = "running";
      this.running.push(request);
      const n = Math.min(request.numTokens - request.numComputedTokens, budget);
      prefills.push(this.take(request, n, scheduled));
      budget -= n;
    }

    return {
      scheduled: [...decodes, ...prefills],
      numScheduledTokens: maxNumBatchedTokens - budget,
      numDecodeSeqs: decodes.length,
      numPrefillSeqs: prefills.length,
      preemptedRequestIds: preempted,
    };
  }

  /**
   * Applies a step's results: appends sampled tokens, checks stop conditions, finishes failed
   * requests. Requests finished meanwhile (aborted during the step) are skipped.
   */
  updateFromOutput(output: SchedulerOutput, runnerOutput: ModelRunnerOutput): SchedulerUpdate {
    const newTokens: Array<{ request: EngineRequest; tokenId: number }> = [];
    const finished: EngineRequest[] = [];
    for (const { request, needsLogits } of output.scheduled) {
      if (request.isFinished) continue;
      if (runnerOutput.failed.has(request.requestId)) {
        this.finish(request, "error");
        finished.push(request);
        continue;
      }
      if (!needsLogits) continue;
      const sample = runnerOutput.sampled.get(request.requestId);
      if (sample === undefined) continue;
      request.outputTokenIds.push(sample.tokenId);
      newTokens.push({ request, tokenId: sample.tokenId });
      const reason = checkStop(request, this.options.eosTokenId, this.options.maxModelLen);
      if (reason !== null) {
        this.finish(request, reason);
        finished.push(request);
      }
    }
    return { newTokens, finished };
  }

  private take(request: EngineRequest, n: number, scheduled: Set<EngineRequest>): ScheduledSequence {
    const start = request.numComputedTokens;
    const isPrefill = n > 1 || start < request.numPromptTokens || start + n < request.numTokens;
    request.numComputedTokens += n;
    scheduled.add(request);
    return {
      request,
      tokenIds: request.tokenSlice(start, start + n),
      start,
      needsLogits: start + n === request.numTokens,
      isPrefill,
    };
  }

  /** Makes room for `tokens` tokens of `request`, preempting newer requests; false when it preempted itself. */
  private reserveOrPreempt(
    request: EngineRequest,
    tokens: number,
    scheduled: Set<EngineRequest>,
    preempted: string[],
  ): boolean {
    while (!this.kv.ensureCapacity(request.seqId, tokens)) {
      let victim: EngineRequest | undefined;
      for (let i = this.running.length - 1; i >= 0; i--) {
        const r = this.running[i]!;
        if (!scheduled.has(r)) {
          victim = r;
          break;
        }
      }
      // `request` itself is unscheduled, so there is always a victim.
      this.preempt(victim!);
      preempted.push(victim!.requestId);
      if (victim === request) return false;
    }
    return true;
  }

  private preempt(request: EngineRequest): void {
    this.kv.free(request.seqId);
    this.running = this.running.filter((r) => r !== request);
    request.status = "preempted";
    request.numComputedTokens = 0;
    request.numPreemptions++;
    this.waiting.unshift(request);
  }

  private finish(request: EngineRequest, reason: FinishReason): void {
    if (request.status === "running" || request.status === "preempted" || request.status === "waiting") {
      this.running = this.running.filter((r) => r !== request);
      this.waiting = this.waiting.filter((r) => r !== request);
    }
    this.kv.free(request.seqId);
    request.status = "finished";
    request.finishReason = reason;
    this.requests.delete(request.requestId);
  }
}
