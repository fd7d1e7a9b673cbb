/** Shapes, worker lists and routing shared by the placement tests. */
import { createDefaultPlacement, createPlacement } from "../src/index.ts";
import type { Placement, PlacementShape, PlacementWorker } from "../src/index.ts";

/** DeepSeek-V3's routing shape on three MoE layers (model layers 3, 4, 5). */
export const V3_SHAPE: PlacementShape = {
  moeLayers: [3, 4, 5],
  nRoutedExperts: 256,
  nGroup: 8,
  topkGroup: 4,
};

/** Workers `w0, w1, …` on nodes `n0, n1, …`: `perNode[i]` workers on node i. */
export function workersOn(perNode: readonly number[]): PlacementWorker[] {
  const out: PlacementWorker[] = [];
  for (const [n, count] of perNode.entries()) {
    for (let j = 0; j < count; j++) out.push({ workerId: `w${out.length}`, node: `n${n}` });
  }
  return out;
}

/** mulberry32: a small seeded PRNG so random routing is reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Group-limited routing like the V3 gate: each row picks `topkGroup` distinct groups, then
 * `topk` distinct experts among them, with positive weights. `hot` experts, when given, are
 * put in the first slot of every other row (so replicas get traffic).
 */
export function randomRouting(
  shape: PlacementShape,
  rows: number,
  topk: number,
  rand: () => number,
  hot: readonly number[] = [],
): { topkIds: Int32Array; topkWeights: Float32Array } {
  const gs = shape.nRoutedExperts / shape.nGroup;
  const topkIds = new Int32Array(rows * topk);
  const topkWeights = new Float32Array(rows * topk);
  for (let r = 0; r < rows; r++) {
    const chosen = new Set<number>();
    const hotExpert = hot.length > 0 && r % 2 === 0 ? hot[(r >> 1) % hot.length] : undefined;
    const groups = new Set<number>();
    if (hotExpert !== undefined) {
      chosen.add(hotExpert);
      groups.add(Math.floor(hotExpert / gs));
    }
    while (groups.size < shape.topkGroup) groups.add(Math.floor(rand() * shape.nGroup));
    const pool = [...groups].flatMap((g) => Array.from({ length: gs }, (_, i) => g * gs + i));
    while (chosen.size < topk) chosen.add(pool[Math.floor(rand() * pool.length)]!);
    for (const [j, e] of [...chosen].entries()) {
      topkIds[r * topk + j] = e;
      topkWeights[r * topk + j] = 0.05 + rand();
    }
  }
  return { topkIds, topkWeights };
}

/**
 * Default placement on 4 workers / 2 nodes plus, in every layer, a second replica of each `hot`
 * expert on the other worker of its node (w0↔w1 on n0, w2↔w3 on n1).
 */
export function placementWithReplicas(hot: readonly number[], version = 2): Placement {
  const base = createDefaultPlacement({ ...V3_SHAPE, workers: workersOn([2, 2]) });
  const L = base.numLayers;
  const E = base.numPhysical;
  const P = E + hot.length;
  const p2l = new Int32Array(L * P);
  const p2w = new Int32Array(L * P);
  for (let l = 0; l < L; l++) {
    p2l.set(base.physicalToLogical.subarray(l * E, (l + 1) * E), l * P);
    p2w.set(base.physicalToWorker.subarray(l * E, (l + 1) * E), l * P);
    for (const [i, e] of hot.entries()) {
      p2l[l * P + E + i] = e;
      p2w[l * P + E + i] = base.physicalToWorker[l * E + e]! ^ 1; // the node's other worker
    }
  }
  return createPlacement({ ...base, version, numPhysical: P, physicalToLogical: p2l, physicalToWorker: p2w });
}
