/**
 * The worker's compute for one decoded DispatchRequest: check it against the placement this
 * worker serves (version, MoE layer, every slot's physical expert held here and a copy of the
 * slot's logical expert), map physical → logical, run the held experts on the rows, count load.
 * Pure apart from the experts backend: no network, no Redis (the load sink is in-memory).
 */
import type { DecodedDispatchRequest } from "@expertmesh/dispatch";
import type { RoutedExpertsBackend } from "@expertmesh/model";
import type { Placement } from "@expertmesh/placement";
import { Code, ExpertMeshError, invalidArgument } from "@expertmesh/shared";
import type { HeldExperts } from "./held-experts.ts";

/** Where served slots are counted per window (LoadRecorder implements it). */
export interface LoadSink {
  /** One row per entry ≥ 0 of a [n, k] physical-id array of MoE layer position `moeLayer`. */
  recordSlots(moeLayer: number, physical: Int32Array): void;
}

export interface ExpertWorkerOptions {
  readonly placement: Placement;
  readonly held: HeldExperts;
  /** Runs the held experts (LocalRoutedExperts over this worker's slice). */
  readonly experts: RoutedExpertsBackend;
  readonly load?: LoadSink;
}

export class ExpertWorker {
  readonly placement: Placement;
  readonly held: HeldExperts;
  /** [layers, P] rows served per physical expert since start (cumulative; for metrics). */
  readonly servedSlots: Float64Array;
  readonly #experts: RoutedExpertsBackend;
  readonly #load: LoadSink | undefined;
  readonly #moeLayerOf: ReadonlyMap<number, number>;

  constructor(options: ExpertWorkerOptions) {
    this.placement = options.placement;
    this.held = options.held;
    this.#experts = options.experts;
    this.#load = options.load;
    this.servedSlots = new Float64Array(this.placement.numLayers * this.placement.numPhysical);
    this.#moeLayerOf = new Map(this.placement.shape.moeLayers.map((l, i) => [l, i]));
  }

  get workerId(): string {
    return this.held.workerId;
  }

  /** Position of `layer` among the MoE layers; INVALID_ARGUMENT when it is not one. */
  moeLayerOf(layer: number): number {
    const m = this.#moeLayerOf.get(layer);
    if (m === undefined) {
      const layers = this.placement.shape.moeLayers;
      throw new ExpertMeshError(
        Code.INVALID_ARGUMENT,
        `layer: model layer ${layer} is not a MoE layer (MoE layers: ${layers[0]}..${layers[layers.length - 1]})`,
        { details: { field: "layer", layer: String(layer) } },
      );
    }
    return m;
  }

  /**
   * Validates the request against this worker's placement, then computes
   * sums [R, H]: Σ over the row's slots on this worker of weight · expert(row).
   * FAILED_PRECONDITION for another placement version or an expert not held here;
   * INVALID_ARGUMENT for a dense/unknown layer or a slot naming an impossible expert.
   */
  async compute(request: DecodedDispatchRequest): Promise<Float32Array> {
    const { placement } = this;
    if (request.placementVersion !== placement.version) {
      throw new ExpertMeshError(
        Code.FAILED_PRECONDITION,
        `placement v${request.placementVersion} is not served by worker ${this.workerId}, which holds v${placement.version}`,
        { details: { placementVersion: String(placement.version) } },
      );
    }
    const moeLayer = this.moeLayerOf(request.layer);
    const logicalIds = this.#logicalOf(request, moeLayer);
    const sums = await this.#experts.run(request.layer, request.rows, logicalIds, request.weights);
    const P = placement.numPhysical;
    const base = moeLayer * P;
    for (const p of request.physical) if (p >= 0) this.servedSlots[base + p]!++;
    this.#load?.recordSlots(moeLayer, request.physical);
    return sums;
  }

  /** [R, K] logical ids of the slots (−1 kept), from the physical ids, every one checked. */
  #logicalOf(request: DecodedDispatchRequest, moeLayer: number): Int32Array {
    const { physical, logical, topK: K } = request;
    const P = this.placement.numPhysical;
    const base = moeLayer * P;
    const p2l = this.placement.physicalToLogical;
    const held = this.held.held;
    const out = new Int32Array(physical.length);
    for (let i = 0; i < physical.length; i++) {
      const p = physical[i] as number;
      if (p < 0) {
        out[i] = -1;
        continue;
      }
      const where = `row ${Math.floor(i / K)} slot ${i % K}`;
      if (p >= P) {
        throw invalidArgument(
          "physical_expert_ids",
          `${where}: physical expert ${p} outside 0..${P - 1} of placement v${this.placement.version}`,
        );
      }
      if (held[base + p] !== 1) {
        throw new ExpertMeshError(
          Code.FAILED_PRECONDITION,
          `${where}: physical expert ${p} of layer ${request.layer} is not held by worker ${this.workerId} (placement v${this.placement.version})`,
          { details: { field: "physical_expert_ids", physical: String(p), layer: String(request.layer) } },
        );
      }
      const e = p2l[base + p] as number;
      if (logical[i] !== e) {
        throw invalidArgument(
          "logical_expert_ids",
          `${where}: logical expert ${logical[i]}, but physical expert ${p} is a copy of ${e}`,
        );
      }
      out[i] = e;
    }
    return out;
  }
}
