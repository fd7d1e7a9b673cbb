/**
 * Dispatch planning (hot path, per micro-batch and MoE layer): pick a physical replica for every
 * routed slot and group rows by worker, so each token's hidden row is sent once per worker it
 * needs, with its (logical, physical, weight) slots for that worker.
 *
 * Replica choice is deterministic given the inputs: slots whose expert has one usable replica
 * are fixed first; then each other slot takes, among its usable replicas, one on a node the row
 * already reaches if there is one (never adds a node the placement did not force), breaking ties
 * by the fewest slots assigned so far in this plan, then the lowest physical id — which spreads a
 * hot expert's rows evenly over its replicas.
 */
import { Code, ExpertMeshError, invalidArgument } from "@expertmesh/shared";
import type { Placement } from "./placement.ts";

export interface DispatchInput {
  /** Position among the placement's MoE layers (see `Placement.moeLayerOf`). */
  readonly moeLayer: number;
  /** Slots per row (V3: 8). */
  readonly topk: number;
  /** [T, topk] logical expert ids chosen by the gate. */
  readonly topkIds: Int32Array;
  /** [T, topk] routing weights of those experts. */
  readonly topkWeights: Float32Array;
  /** [workers] 1 = skip this worker's replicas (dead or draining). */
  readonly unavailableWorkers?: Uint8Array;
}

/**
 * What one worker receives for this (micro-batch, layer). The arrays are views into buffers
 * shared by all workers of the plan (copy before aligning/reusing their `.buffer`).
 */
export interface WorkerDispatch {
  /** Index in `placement.workers`. */
  readonly worker: number;
  readonly workerId: string;
  /** [n] batch row indices, ascending, each once. */
  readonly rows: Int32Array;
  /** [n, topk] logical expert per slot; −1 where the slot is served by another worker. */
  readonly logical: Int32Array;
  /** [n, topk] physical expert per slot; −1 where the slot is served by another worker. */
  readonly physical: Int32Array;
  /** [n, topk] routing weight per slot; 0 where the slot is served by another worker. */
  readonly weights: Float32Array;
}

export interface DispatchPlan {
  readonly placementVersion: number;
  readonly moeLayer: number;
  readonly numRows: number;
  readonly topk: number;
  /** [T, topk] chosen physical expert of every slot. */
  readonly physical: Int32Array;
  /** One per placement worker (index = worker index); `rows` is empty where a worker is not needed. */
  readonly workers: readonly WorkerDispatch[];
  /** [T] distinct nodes each row reaches (≤ topkGroup under a valid placement). */
  readonly nodesPerRow: Int32Array;
  readonly maxNodesPerRow: number;
}

export function planDispatch(placement: Placement, input: DispatchInput): DispatchPlan {
  const { moeLayer, topk: k, topkIds, topkWeights, unavailableWorkers } = input;
  const L = placement.numLayers;
  const E = placement.shape.nRoutedExperts;
  const P = placement.numPhysical;
  const R = placement.maxReplicas;
  const W = placement.workers.length;
  if (!Number.isInteger(moeLayer) || moeLayer < 0 || moeLayer >= L) {
    throw invalidArgument("moeLayer", `must be in 0..${L - 1}, got ${moeLayer}`);
  }
  if (!Number.isInteger(k) || k < 1) throw invalidArgument("topk", `must be a positive integer, got ${k}`);
  if (topkIds.length % k !== 0)
    throw invalidArgument("topkIds", `length ${topkIds.length} is not a multiple of topk ${k}`);
  if (topkWeights.length !== topkIds.length) {
    throw invalidArgument(
      "topkWeights",
      `length ${topkWeights.length} differs from topkIds length ${topkIds.length}`,
    );
  }
  if (unavailableWorkers !== undefined && unavailableWorkers.length !== W) {
    throw invalidArgument(
      "unavailableWorkers",
      `length ${unavailableWorkers.length} differs from worker count ${W}`,
    );
  }
  const T = topkIds.length / k;
  const lP = moeLayer * P;
  const lE = moeLayer * E;
  const p2w = placement.physicalToWorker;
  const p2n = placement.physicalToNode;
  const l2p = placement.logicalToAllPhysical;
  const replicaCount = placement.logicalReplicaCount;

  const chosen = new Int32Array(T * k); // [T, k]
  const load = new Int32Array(P); // slots given to each physical expert so far
  const nodeStamp = new Int32Array(placement.nodes.length).fill(-1);
  const workerStamp = new Int32Array(W).fill(-1);
  const rowsOfWorker = new Int32Array(W);
  const nodesPerRow = new Int32Array(T);
  let maxNodesPerRow = 0;

  for (let r = 0; r < T; r++) {
    const o = r * k;
    let nodes = 0;
    // Pass 1: slots with a single usable replica fix their node.
    for (let j = 0; j < k; j++) {
      const e = topkIds[o + j]!;
      if (!(e >= 0 && e < E))
        throw invalidArgument("topkIds", `row ${r} slot ${j}: logical expert ${e} outside 0..${E - 1}`);
      chosen[o + j] = -1;
      if (replicaCount[lE + e] !== 1) continue;
      const p = l2p[(lE + e) * R]!;
      if (unavailableWorkers !== undefined && unavailableWorkers[p2w[lP + p]!] === 1) continue;
      chosen[o + j] = p;
      load[p]!++;
      const n = p2n[lP + p]!;
      if (nodeStamp[n] !== r) {
        nodeStamp[n] = r;
        nodes++;
      }
    }
    // Pass 2: replicated experts prefer a node the row already reaches, then the least used replica.
    for (let j = 0; j < k; j++) {
      if (chosen[o + j]! >= 0) continue;
      const e = topkIds[o + j]!;
      const base = (lE + e) * R;
      const count = replicaCount[lE + e]!;
      let best = -1;
      let bestOnNode = false;
      let bestLoad = 0;
      for (let t = 0; t < count; t++) {
        const p = l2p[base + t]!;
        if (unavailableWorkers !== undefined && unavailableWorkers[p2w[lP + p]!] === 1) continue;
        const onNode = nodeStamp[p2n[lP + p]!] === r;
        if (best < 0 || (onNode && !bestOnNode) || (onNode === bestOnNode && load[p]! < bestLoad)) {
          best = p;
          bestOnNode = onNode;
          bestLoad = load[p]!;
        }
      }
      if (best < 0) {
        throw new ExpertMeshError(
          Code.UNAVAILABLE,
          `layer ${placement.shape.moeLayers[moeLayer]}: every replica of logical expert ${e} is on an unavailable worker`,
          { details: { layer: String(placement.shape.moeLayers[moeLayer]), logical: String(e) } },
        );
      }
      chosen[o + j] = best;
      load[best]!++;
      if (!bestOnNode) {
        nodeStamp[p2n[lP + best]!] = r;
        nodes++;
      }
    }
    nodesPerRow[r] = nodes;
    if (nodes > maxNodesPerRow) maxNodesPerRow = nodes;
    for (let j = 0; j < k; j++) {
      const w = p2w[lP + chosen[o + j]!]!;
      if (workerStamp[w] !== r) {
        workerStamp[w] = r;
        rowsOfWorker[w]!++;
      }
    }
  }

  // Second sweep: fill each worker's rows and slots. One buffer per field for all workers
  // (worker w's part is a view), so a plan costs a handful of allocations whatever W is.
  let total = 0;
  for (let w = 0; w < W; w++) total += rowsOfWorker[w]!;
  const allRows = new Int32Array(total);
  const allLogical = new Int32Array(total * k).fill(-1);
  const allPhysical = new Int32Array(total * k).fill(-1);
  const allWeights = new Float32Array(total * k);
  const workers: WorkerDispatch[] = [];
  for (let w = 0, start = 0; w < W; w++) {
    const end = start + rowsOfWorker[w]!;
    workers.push({
      worker: w,
      workerId: placement.workers[w]!.workerId,
      rows: allRows.subarray(start, end),
      logical: allLogical.subarray(start * k, end * k),
      physical: allPhysical.subarray(start * k, end * k),
      weights: allWeights.subarray(start * k, end * k),
    });
    start = end;
  }
  const fillPos = new Int32Array(W); // rows written so far per worker
  workerStamp.fill(-1);
  for (let r = 0; r < T; r++) {
    const o = r * k;
    for (let j = 0; j < k; j++) {
      const p = chosen[o + j]!;
      const w = p2w[lP + p]!;
      const d = workers[w]!;
      if (workerStamp[w] !== r) {
        workerStamp[w] = r;
        d.rows[fillPos[w]!++] = r;
      }
      const at = (fillPos[w]! - 1) * k + j;
      d.logical[at] = topkIds[o + j]!;
      d.physical[at] = p;
      d.weights[at] = topkWeights[o + j]!;
    }
  }
  return {
    placementVersion: placement.version,
    moeLayer,
    numRows: T,
    topk: k,
    physical: chosen,
    workers,
    nodesPerRow,
    maxNodesPerRow,
  };
}
