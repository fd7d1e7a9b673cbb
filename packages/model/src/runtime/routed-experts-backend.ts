/**
 * Where a MoE layer's routed experts run. The model only sees this interface: the local backend
 * wraps GroupedExperts in-process; the cluster plugs in a remote one (dispatch/combine over gRPC).
 */
import { ExpertMeshError, Code } from "@expertmesh/shared";
import type { Checkpoint } from "../checkpoint/checkpoint.ts";
import type { SessionOptions } from "../onnx/ort-session.ts";
import { GroupedExperts, GroupedExpertsSessions, type ExpertWeights } from "./grouped-experts.ts";

export interface RoutedExpertsBackend {
  /**
   * rows [T, hidden] (router input), experts [T, k] logical ids, weights [T, k] →
   * [T, hidden]: Σ_j weights[t, j] · expert_{experts[t, j]}(rows[t]).
   */
  run(layer: number, rows: Float32Array, experts: Int32Array, weights: Float32Array): Promise<Float32Array>;
}

/** MoE layer → logical experts held. */
export type ExpertSlice = ReadonlyMap<number, readonly number[]>;

/** Which routed experts a process loads. */
export type ExpertSelection = "all" | "none" | ExpertSlice;

/** Runs routed experts in this process; layers or experts not held contribute nothing. */
export class LocalRoutedExperts implements RoutedExpertsBackend {
  constructor(
    private readonly layers: ReadonlyMap<number, GroupedExperts>,
    private readonly sessions: GroupedExpertsSessions,
  ) {}

  /** Held logical experts per MoE layer. */
  slice(): ExpertSlice {
    return new Map([...this.layers].map(([l, g]) => [l, g.expertIds()]));
  }

  layer(layer: number): GroupedExperts | undefined {
    return this.layers.get(layer);
  }

  async run(
    layer: number,
    rows: Float32Array,
    experts: Int32Array,
    weights: Float32Array,
  ): Promise<Float32Array> {
    const g = this.layers.get(layer);
    if (g === undefined) return new Float32Array(rows.length);
    return g.run(rows, experts, weights);
  }

  release(): Promise<void> {
    return this.sessions.release();
  }
}

export function moeLayers(checkpoint: Checkpoint): number[] {
  const c = checkpoint.config;
  return Array.from({ length: c.numLayers - c.firstKDenseReplace }, (_, i) => c.firstKDenseReplace + i);
}

/** Loads the selected routed experts from the checkpoint (only those) and wraps them for local runs. */
export async function loadRoutedExperts(
  checkpoint: Checkpoint,
  selection: "all" | ExpertSlice,
  options: SessionOptions,
): Promise<LocalRoutedExperts> {
  const c = checkpoint.config;
  const moe = moeLayers(checkpoint);
  const wanted: ExpertSlice =
    selection === "all"
      ? new Map(moe.map((l) => [l, Array.from({ length: c.nRoutedExperts }, (_, e) => e)]))
      : selection;
  const sessions = new GroupedExpertsSessions(c.hiddenSize, c.moeIntermediateSize, options);
  const layers = new Map<number, GroupedExperts>();
  for (const [layer, experts] of wanted) {
    if (!moe.includes(layer)) {
      throw new ExpertMeshError(
        Code.INVALID_ARGUMENT,
        `expert slice names layer ${layer}, which is not a MoE layer (MoE layers: ${moe[0]}..${moe[moe.length - 1]})`,
      );
    }
    for (const e of experts) {
      if (!Number.isInteger(e) || e < 0 || e >= c.nRoutedExperts) {
        throw new ExpertMeshError(
          Code.INVALID_ARGUMENT,
          `expert slice names expert ${e} of layer ${layer}; the model has ${c.nRoutedExperts}`,
        );
      }
    }
    if (experts.length === 0) continue;
    const read = async (e: number): Promise<ExpertWeights> => {
      const p = `model.layers.${layer}.mlp.experts.${e}.`;
      return {
        gate: await checkpoint.readFloat32(`${p}gate_proj.weight`),
        up: await checkpoint.readFloat32(`${p}up_proj.weight`),
        down: await checkpoint.readFloat32(`${p}down_proj.weight`),
      };
    };
    layers.set(layer, await GroupedExperts.load(sessions, experts, read));
  }
  return new LocalRoutedExperts(layers, sessions);
}
