import type { SamplingParams } from "./sampling-params.ts";
import { SeededRng } from "./seeded-rng.ts";

export type RequestStatus = "waiting" | "running" | "preempted" | "finished";

/** Why a request ended. "error": this request failed; others were not affected. */
export type FinishReason = "stop" | "length" | "abort" | "error";

/**
 * One request's state as the scheduler tracks it (vLLM's Request): all known tokens
 * (prompt, then generated), how many of them are in the KV cache, and its KV sequence id.
 */
export class EngineRequest {
  readonly requestId: string;
  /** KV sequence id in the pool (assigned by the scheduler's owner). */
  readonly seqId: number;
  readonly promptTokenIds: Int32Array;
  readonly outputTokenIds: number[] = [];
  readonly sampling: SamplingParams;
  /** The request's own PRNG: its samples do not depend on what it is batched with. */
  readonly rng: SeededRng;
  /** Tokens whose KV rows are written (or scheduled to be, in the step in flight). */
  numComputedTokens = 0;
  status: RequestStatus = "waiting";
  finishReason: FinishReason | null = null;
  numPreemptions = 0;

  constructor(requestId: string, seqId: number, promptTokenIds: Int32Array, sampling: SamplingParams) {
    this.requestId = requestId;
    this.seqId = seqId;
    this.promptTokenIds = promptTokenIds;
    this.sampling = sampling;
    this.rng = new SeededRng(sampling.seed ?? Math.floor(Math.random() * 0x1_0000_0000));
  }

  get numPromptTokens(): number {
    return this.promptTokenIds.length;
  }

  /** Prompt + generated tokens. */
  get numTokens(): number {
    return this.promptTokenIds.length + this.outputTokenIds.length;
  }

  get isFinished(): boolean {
    return this.status === "finished";
  }

  /** Tokens [from, to) of prompt + output as one array. */
  tokenSlice(from: number, to: number): Int32Array {
    const out = new Int32Array(to - from);
    const p = this.promptTokenIds.length;
    for (let i = from; i < to; i++)
      out[i - from] = i < p ? this.promptTokenIds[i]! : this.outputTokenIds[i - p]!;
    return out;
  }
}
