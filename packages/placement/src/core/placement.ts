/**
 * A placement: versioned map, per MoE layer, logical expert → physical experts (replicas) →
 * worker → node. Physical ids are dense per layer (0..numPhysical−1) and every layer has the
 * same count, so the hot lookups are flat typed arrays `[layers, P]` as in SGLang's
 * `physical_to_logical_map`. Build one with `createPlacement` / `createDefaultPlacement` (which
 * also check the ≤ topk_group nodes-per-token invariant); the arrays are shared, never written
 * after construction: treat them as read-only.
 */
import { Code, ExpertMeshError, invalidArgument } from "@expertmesh/shared";
import { checkShape, checkWorkers, groupSize } from "./placement-shape.ts";
import type { PlacementShape, PlacementWorker } from "./placement-shape.ts";

export interface PlacementSpec {
  /** Positive integer; a store only accepts versions newer than its current one. */
  readonly version: number;
  readonly shape: PlacementShape;
  readonly workers: readonly PlacementWorker[];
  /** Physical experts per layer (P ≥ nRoutedExperts; P − E redundant replicas). */
  readonly numPhysical: number;
  /** [layers, P] logical expert of each physical expert. */
  readonly physicalToLogical: ArrayLike<number>;
  /** [layers, P] index into `workers` of the worker holding each physical expert. */
  readonly physicalToWorker: ArrayLike<number>;
}

/** What one worker holds: its physical experts per MoE layer (ascending ids). */
export interface WorkerSlice {
  readonly workerId: string;
  readonly node: string;
  /** Per moeLayer: physical expert ids on this worker. */
  readonly physical: readonly Int32Array[];
  /** Per moeLayer: the logical expert of each entry of `physical`. */
  readonly logical: readonly Int32Array[];
}

export class Placement {
  readonly version: number;
  readonly shape: PlacementShape;
  readonly workers: readonly PlacementWorker[];
  /** Distinct node labels, in order of first appearance in `workers`. */
  readonly nodes: readonly string[];
  readonly numLayers: number;
  readonly numPhysical: number;
  /** Most replicas any logical expert has in any layer (width of `logicalToAllPhysical`). */
  readonly maxReplicas: number;
  /** [workers] node index of each worker. */
  readonly workerNode: Int32Array;
  /** [layers, P] */
  readonly physicalToLogical: Int32Array;
  /** [layers, P] worker index */
  readonly physicalToWorker: Int32Array;
  /** [layers, P] node index */
  readonly physicalToNode: Int32Array;
  /** [layers, E] replicas per logical expert */
  readonly logicalReplicaCount: Int32Array;
  /** [layers, E, maxReplicas] physical ids (ascending), padded with −1 */
  readonly logicalToAllPhysical: Int32Array;

  readonly #workerIndex: ReadonlyMap<string, number>;
  readonly #moeLayerOf: ReadonlyMap<number, number>;

  constructor(spec: PlacementSpec) {
    if (!Number.isSafeInteger(spec.version) || spec.version < 1) {
      throw invalidArgument("version", `must be a positive integer, got ${String(spec.version)}`);
    }
    this.version = spec.version;
    this.shape = checkShape(spec.shape);
    this.workers = checkWorkers(spec.workers);
    const L = this.shape.moeLayers.length;
    const E = this.shape.nRoutedExperts;
    const P = spec.numPhysical;
    if (!Number.isInteger(P) || P < 1)
      throw invalidArgument("numPhysical", `must be a positive integer, got ${String(P)}`);
    this.numLayers = L;
    this.numPhysical = P;

    const nodeIndex = new Map<string, number>();
    this.workerNode = new Int32Array(this.workers.length);
    for (const [w, worker] of this.workers.entries()) {
      let n = nodeIndex.get(worker.node);
      if (n === undefined) nodeIndex.set(worker.node, (n = nodeIndex.size));
      this.workerNode[w] = n;
    }
    this.nodes = Object.freeze([...nodeIndex.keys()]);
    this.#workerIndex = new Map(this.workers.map((w, i) => [w.workerId, i]));
    this.#moeLayerOf = new Map(this.shape.moeLayers.map((l, i) => [l, i]));

    for (const [name, arr] of [
      ["physicalToLogical", spec.physicalToLogical],
      ["physicalToWorker", spec.physicalToWorker],
    ] as const) {
      if (arr.length !== L * P) {
        throw new ExpertMeshError(
          Code.FAILED_PRECONDITION,
          `placement v${spec.version}: ${name} has ${arr.length} entries, expected layers × numPhysical = ${L} × ${P}`,
        );
      }
    }
    this.physicalToLogical = Int32Array.from(spec.physicalToLogical);
    this.physicalToWorker = Int32Array.from(spec.physicalToWorker);
    // Int32Array.from turns NaN/fractions into integers; check the originals are exact.
    for (let i = 0; i < L * P; i++) {
      if (
        this.physicalToLogical[i] !== spec.physicalToLogical[i] ||
        this.physicalToWorker[i] !== spec.physicalToWorker[i]
      ) {
        throw new ExpertMeshError(
          Code.FAILED_PRECONDITION,
          `placement v${spec.version}: moe layer #${Math.floor(i / P)} physical expert ${i % P} has a non-integer entry`,
        );
      }
    }
    this.logicalReplicaCount = checkPlacementArrays(this);

    let maxReplicas = 0;
    for (const c of this.logicalReplicaCount) maxReplicas = Math.max(maxReplicas, c);
    this.maxReplicas = maxReplicas;
    this.physicalToNode = new Int32Array(L * P);
    this.logicalToAllPhysical = new Int32Array(L * E * maxReplicas).fill(-1);
    const fill = new Int32Array(L * E);
    for (let l = 0; l < L; l++) {
      for (let p = 0; p < P; p++) {
        const i = l * P + p;
        this.physicalToNode[i] = this.workerNode[this.physicalToWorker[i]!]!;
        const le = l * E + this.physicalToLogical[i]!;
        this.logicalToAllPhysical[le * maxReplicas + fill[le]!] = p;
        fill[le]!++;
      }
    }
  }

  /** Index of a worker in `workers`, or −1 when it holds nothing in this placement. */
  workerIndex(workerId: string): number {
    return this.#workerIndex.get(workerId) ?? -1;
  }

  /** Position of a model layer among the MoE layers; throws INVALID_ARGUMENT for a dense layer. */
  moeLayerOf(modelLayer: number): number {
    const i = this.#moeLayerOf.get(modelLayer);
    if (i === undefined)
      throw invalidArgument("layer", `model layer ${modelLayer} is not a MoE layer of this placement`);
    return i;
  }

  /** Expert group of a logical expert. */
  groupOf(logical: number): number {
    return Math.floor(logical / groupSize(this.shape));
  }

  /** Physical replicas of a logical expert (a view; ascending ids). */
  replicasOf(moeLayer: number, logical: number): Int32Array {
    const le = moeLayer * this.shape.nRoutedExperts + logical;
    const start = le * this.maxReplicas;
    return this.logicalToAllPhysical.subarray(start, start + this.logicalReplicaCount[le]!);
  }

  /** The physical experts a worker must load, per MoE layer. */
  sliceOf(workerId: string): WorkerSlice {
    const w = this.workerIndex(workerId);
    if (w < 0)
      throw new ExpertMeshError(Code.NOT_FOUND, `worker ${workerId} is not in placement v${this.version}`);
    const physical: Int32Array[] = [];
    const logical: Int32Array[] = [];
    const P = this.numPhysical;
    for (let l = 0; l < this.numLayers; l++) {
      const ids: number[] = [];
      for (let p = 0; p < P; p++) if (this.physicalToWorker[l * P + p] === w) ids.push(p);
      physical.push(Int32Array.from(ids));
      logical.push(Int32Array.from(ids, (p) => this.physicalToLogical[l * P + p]!));
    }
    return { workerId, node: this.workers[w]!.node, physical, logical };
  }

  /** Workers that hold no physical expert in any layer. */
  idleWorkers(): string[] {
    const used = new Uint8Array(this.workers.length);
    for (const w of this.physicalToWorker) used[w] = 1;
    return this.workers.filter((_, i) => used[i] === 0).map((w) => w.workerId);
  }
}

/**
 * Structural checks shared by the constructor and `validatePlacement`: every entry in range and
 * every logical expert with at least one replica in every layer. Returns replicas per
 * [layer, logical]. Throws FAILED_PRECONDITION naming the layer.
 */
export function checkPlacementArrays(
  p: Pick<
    Placement,
    "version" | "shape" | "workers" | "numPhysical" | "physicalToLogical" | "physicalToWorker"
  >,
): Int32Array {
  const { moeLayers, nRoutedExperts: E } = p.shape;
  const P = p.numPhysical;
  const W = p.workers.length;
  const counts = new Int32Array(moeLayers.length * E);
  for (let l = 0; l < moeLayers.length; l++) {
    for (let q = 0; q < P; q++) {
      const e = p.physicalToLogical[l * P + q]!;
      const w = p.physicalToWorker[l * P + q]!;
      if (e < 0 || e >= E) {
        throw new ExpertMeshError(
          Code.FAILED_PRECONDITION,
          `placement v${p.version} layer ${moeLayers[l]}: physical expert ${q} maps to logical expert ${e}, outside 0..${E - 1}`,
          { details: { layer: String(moeLayers[l]), physical: String(q) } },
        );
      }
      if (w < 0 || w >= W) {
        throw new ExpertMeshError(
          Code.FAILED_PRECONDITION,
          `placement v${p.version} layer ${moeLayers[l]}: physical expert ${q} is on unknown worker #${w} (placement has ${W} workers)`,
          { details: { layer: String(moeLayers[l]), physical: String(q) } },
        );
      }
      counts[l * E + e]!++;
    }
    for (let e = 0; e < E; e++) {
      if (counts[l * E + e] === 0) {
        throw new ExpertMeshError(
          Code.FAILED_PRECONDITION,
          `placement v${p.version} layer ${moeLayers[l]}: logical expert ${e} has no physical replica`,
          { details: { layer: String(moeLayers[l]), logical: String(e) } },
        );
      }
    }
  }
  return counts;
}
