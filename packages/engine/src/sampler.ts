import { Code, ExpertMeshError } from "@expertmesh/shared";
import type { SamplingParams } from "./sampling-params.ts";
import type { SeededRng } from "./seeded-rng.ts";

export interface TokenLogprob {
  tokenId: number;
  /** log-softmax of the unmodified logits (before temperature / top-k / top-p), as vLLM reports. */
  logprob: number;
  /** 1 = most likely token. */
  rank: number;
}

export interface SampleLogprobs {
  chosen: TokenLogprob;
  /** The `logprobs` most likely tokens, most likely first. */
  top: TokenLogprob[];
}

export interface SamplerOutput {
  tokenId: number;
  /** Present when the request asked for logprobs. */
  logprobs?: SampleLogprobs;
}

/**
 * Turns one row of logits into a token: greedy at temperature 0, else temperature → min-p →
 * top-k → top-p (vLLM's order) and one draw from the request's own PRNG. Scratch buffers are
 * sized to the vocabulary once and reused, so sampling allocates nothing per token.
 */
export class Sampler {
  readonly vocabSize: number;
  /** Unnormalised probabilities of the current row: [vocab]. */
  private readonly probs: Float64Array;
  /** Candidate token ids (top-p sort, top-k select): [vocab]. */
  private readonly ids: Int32Array;
  /** Scratch copy for the top-k threshold: [vocab]. */
  private readonly values: Float32Array;

  constructor(vocabSize: number) {
    this.vocabSize = vocabSize;
    this.probs = new Float64Array(vocabSize);
    this.ids = new Int32Array(vocabSize);
    this.values = new Float32Array(vocabSize);
  }

  /** `logits`: one row, [vocab]. */
  sample(logits: Float32Array, params: SamplingParams, rng: SeededRng): SamplerOutput {
    if (logits.length !== this.vocabSize) {
      throw new ExpertMeshError(
        Code.INTERNAL,
        `logits row has ${logits.length} values, vocab is ${this.vocabSize}`,
      );
    }
    const tokenId = params.temperature === 0 ? argmax(logits) : this.draw(logits, params, rng);
    if (!Number.isFinite(logits[tokenId]!)) throw new ExpertMeshError(Code.INTERNAL, "logits are not finite");
    if (params.logprobs === null) return { tokenId };
    return { tokenId, logprobs: computeLogprobs(logits, tokenId, params.logprobs) };
  }

  private draw(logits: Float32Array, params: SamplingParams, rng: SeededRng): number {
    const { probs, ids, vocabSize } = this;
    let max = -Infinity;
    for (let i = 0; i < vocabSize; i++) if (logits[i]! > max) max = logits[i]!;
    if (!Number.isFinite(max)) throw new ExpertMeshError(Code.INTERNAL, "logits are not finite");
    const invT = 1 / params.temperature;
    // min-p relative to the top token, whose unnormalised probability is exp(0) = 1.
    const minProb = params.minP;
    let kth = -Infinity;
    if (params.topK > 0) kth = this.kthLargest(logits, params.topK);
    let count = 0;
    let total = 0;
    for (let i = 0; i < vocabSize; i++) {
      const l = logits[i]!;
      const p = l >= kth ? Math.exp((l - max) * invT) : 0;
      if (p > 0 && p >= minProb) {
        probs[i] = p;
        ids[count++] = i;
        total += p;
      } else {
        probs[i] = 0;
      }
    }
    if (params.topP < 1) {
      // Most likely first, lower id first on ties; keep a token while the mass before it < topP.
      const cand = ids.subarray(0, count);
      cand.sort((a, b) => probs[b]! - probs[a]! || a - b);
      const limit = params.topP * total;
      let before = 0;
      let kept = 0;
      while (kept < count && before < limit) before += probs[cand[kept++]!]!;
      count = kept;
      total = before;
    }
    let u = rng.nextFloat() * total;
    for (let j = 0; j < count; j++) {
      const id = ids[j]!;
      u -= probs[id]!;
      if (u < 0) return id;
    }
    return ids[count - 1]!; // rounding left u ≥ 0 after the last candidate
  }

  /** The k-th largest logit (quickselect on a scratch copy). */
  private kthLargest(logits: Float32Array, k: number): number {
    const v = this.values;
    v.set(logits);
    let lo = 0;
    let hi = v.length - 1;
    const target = k - 1; // index in descending order
    while (lo < hi) {
      const pivot = v[(lo + hi) >>> 1]!;
      let i = lo;
      let j = hi;
      while (i <= j) {
        while (v[i]! > pivot) i++;
        while (v[j]! < pivot) j--;
        if (i <= j) {
          const t = v[i]!;
          v[i] = v[j]!;
          v[j] = t;
          i++;
          j--;
        }
      }
      if (target <= j) hi = j;
      else if (target >= i) lo = i;
      else break;
    }
    return v[target]!;
  }
}

/** Index of the largest value; the lowest index on ties (as torch.argmax). */
export function argmax(row: Float32Array): number {
  let best = 0;
  let bestValue = row[0]!;
  for (let i = 1; i < row.length; i++) {
    if (row[i]! > bestValue) {
      bestValue = row[i]!;
      best = i;
    }
  }
  return best;
}

/** log(Σ exp(row)), computed stably. */
export function logSumExp(row: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  return max + Math.log(sum);
}

/** The chosen token's logprob and rank, and the `topN` best, from the unmodified logits. */
export function computeLogprobs(logits: Float32Array, tokenId: number, topN: number): SampleLogprobs {
  const lse = logSumExp(logits);
  const chosenLogit = logits[tokenId]!;
  let rank = 1;
  // Top-N by insertion into a short sorted list (N ≤ max_logprobs, small).
  const topIds: number[] = [];
  for (let i = 0; i < logits.length; i++) {
    const l = logits[i]!;
    if (l > chosenLogit) rank++;
    if (topN === 0) continue;
    if (topIds.length === topN && l <= logits[topIds[topN - 1]!]!) continue;
    let at = topIds.length;
    while (at > 0 && l > logits[topIds[at - 1]!]!) at--;
    topIds.splice(at, 0, i);
    if (topIds.length > topN) topIds.pop();
  }
  return {
    chosen: { tokenId, logprob: chosenLogit - lse, rank },
    top: topIds.map((id, r) => ({ tokenId: id, logprob: logits[id]! - lse, rank: r + 1 })),
  };
}
