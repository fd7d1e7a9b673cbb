/**
 * DeepSeek-V3 expert routing (noaux_tc), a pure function over typed arrays:
 * given s = sigmoid(router logits) (computed in the graph), selection uses s + e_score_correction_bias; group score = sum of
 * the two largest biased scores of the group (max when there is no bias, as the reference's V2
 * rule); keep the best `topkGroup` groups; the top-k biased scores inside them are the experts;
 * weights = their unbiased s normalised to sum 1, × routedScalingFactor.
 * Scores are rounded to float32 at every step the reference computes in float32.
 */
import { ExpertMeshError, Code } from "@expertmesh/shared";

export interface RoutingParams {
  nExperts: number;
  /** Experts per token (num_experts_per_tok). */
  topK: number;
  nGroup: number;
  topkGroup: number;
  routedScalingFactor: number;
}

export interface RoutingResult {
  /** [rows, topK] chosen logical experts, ascending per row. */
  experts: Int32Array;
  /** [rows, topK] final weights in the same order (sum = routedScalingFactor per row). */
  weights: Float32Array;
  /** [rows, topkGroup] kept groups, ascending. */
  groups: Int32Array;
  /** [rows] k-th minus (k+1)-th biased score among the kept groups' experts (selection slack). */
  expertMargin: Float32Array;
  /** [rows] topkGroup-th minus next group score (0 when every group is kept). */
  groupMargin: Float32Array;
}

const f32 = Math.fround;

/**
 * Routes `rows` = scores.length / nExperts tokens. `scores` [rows, nExperts] are the router's
 * sigmoid scores, sigmoid(normed hidden · gate.weightᵀ); `bias` [nExperts] or null.
 */
export function routeTokens(
  scores: Float32Array,
  bias: Float32Array | null,
  p: RoutingParams,
): RoutingResult {
  const E = p.nExperts;
  const K = p.topK;
  const G = p.nGroup;
  const KG = p.topkGroup;
  if (E % G !== 0 || KG > G || K > (E / G) * KG) {
    throw new ExpertMeshError(
      Code.INVALID_ARGUMENT,
      `routing: inconsistent n_group ${G} / topk_group ${KG} / top-k ${K} for ${E} experts`,
    );
  }
  if (scores.length % E !== 0)
    throw new ExpertMeshError(
      Code.INTERNAL,
      `routing: scores length ${scores.length} is not a multiple of ${E}`,
    );
  if (bias !== null && bias.length !== E)
    throw new ExpertMeshError(Code.INTERNAL, `routing: bias has ${bias.length} values, expected ${E}`);
  const rows = scores.length / E;
  const perGroup = E / G;
  const out: RoutingResult = {
    experts: new Int32Array(rows * K),
    weights: new Float32Array(rows * K),
    groups: new Int32Array(rows * KG),
    expertMargin: new Float32Array(rows),
    groupMargin: new Float32Array(rows),
  };
  const sel = new Float32Array(E); // biased selection scores
  const groupScore = new Float32Array(G);
  const groupOrder = new Int32Array(G);
  const keptGroup = new Uint8Array(G);
  const chosen = new Int32Array(K + 1);
  for (let r = 0; r < rows; r++) {
    const s = scores.subarray(r * E, (r + 1) * E); // unbiased scores
    if (bias === null) sel.set(s);
    else for (let e = 0; e < E; e++) sel[e] = (s[e] as number) + (bias[e] as number);
    // group scores
    for (let g = 0; g < G; g++) {
      let a = -Infinity;
      let b = -Infinity;
      for (let e = g * perGroup; e < (g + 1) * perGroup; e++) {
        const v = sel[e] as number;
        if (v > a) {
          b = a;
          a = v;
        } else if (v > b) b = v;
      }
      groupScore[g] = bias === null || perGroup < 2 ? a : f32(a + b);
      groupOrder[g] = g;
    }
    // best KG groups (stable: lower index first on ties)
    topIndices(groupScore, groupOrder, G, Math.min(KG + 1, G));
    keptGroup.fill(0);
    for (let j = 0; j < KG; j++) keptGroup[groupOrder[j] as number] = 1;
    out.groupMargin[r] =
      KG < G
        ? f32(
            (groupScore[groupOrder[KG - 1] as number] as number) -
              (groupScore[groupOrder[KG] as number] as number),
          )
        : 0;
    const gs = out.groups.subarray(r * KG, (r + 1) * KG);
    gs.set(groupOrder.subarray(0, KG));
    gs.sort();
    // top K+1 experts inside the kept groups (the (K+1)-th only for the margin)
    const nCand = Math.min(K + 1, KG * perGroup);
    let found = 0;
    for (let g = 0; g < G; g++) {
      if (keptGroup[g] === 0) continue;
      for (let e = g * perGroup; e < (g + 1) * perGroup; e++) {
        const v = sel[e] as number;
        // insertion into the sorted candidate list (descending score, ascending index on ties)
        if (found < nCand) found++;
        else if (!(v > (sel[chosen[nCand - 1] as number] as number))) continue;
        let j = found - 1;
        while (j > 0 && v > (sel[chosen[j - 1] as number] as number)) {
          chosen[j] = chosen[j - 1] as number;
          j--;
        }
        chosen[j] = e;
      }
    }
    out.expertMargin[r] =
      nCand > K ? f32((sel[chosen[K - 1] as number] as number) - (sel[chosen[K] as number] as number)) : 0;
    const ids = out.experts.subarray(r * K, (r + 1) * K);
    ids.set(chosen.subarray(0, K));
    ids.sort();
    let sum = 0;
    for (const e of ids) sum = f32(sum + (s[e] as number));
    for (let j = 0; j < K; j++) {
      const e = ids[j] as number;
      out.weights[r * K + j] = f32(f32((s[e] as number) / sum) * p.routedScalingFactor);
    }
  }
  return out;
}

/** Partially sorts `order[0..n)` so that its first `m` entries index the largest `score`s, descending. */
function topIndices(score: Float32Array, order: Int32Array, n: number, m: number): void {
  for (let i = 0; i < m; i++) {
    let best = i;
    for (let j = i + 1; j < n; j++) {
      const a = score[order[j] as number] as number;
      const b = score[order[best] as number] as number;
      if (a > b || (a === b && (order[j] as number) < (order[best] as number))) best = j;
    }
    const t = order[i] as number;
    order[i] = order[best] as number;
    order[best] = t;
  }
}
