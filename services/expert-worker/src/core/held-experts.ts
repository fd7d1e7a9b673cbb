/**
 * What this worker holds under a placement: the logical experts to read from the checkpoint per
 * MoE layer (a logical expert with several replicas here is loaded once) and a [layers, P] mask
 * of its physical experts. Checks, at startup, that the placement describes this model.
 */
import type { ExpertSlice, ModelConfig } from "@expertmesh/model";
import type { Placement, WorkerSlice } from "@expertmesh/placement";
import { Code, ExpertMeshError } from "@expertmesh/shared";

export interface HeldExperts {
  readonly workerId: string;
  readonly node: string;
  /** Per MoE layer (model index) the logical experts to load, ascending, each once. */
  readonly experts: ExpertSlice;
  /** [layers, P] 1 where the physical expert is on this worker. */
  readonly held: Uint8Array;
  /** The placement's own view: per MoE layer, physical ids and their logical experts. */
  readonly slice: WorkerSlice;
}

/** Throws FAILED_PRECONDITION when the placement is not about this model (layers, experts, groups). */
export function checkPlacementFitsModel(placement: Placement, model: ModelConfig): void {
  const expected = Array.from(
    { length: model.numLayers - model.firstKDenseReplace },
    (_, i) => model.firstKDenseReplace + i,
  );
  const { shape } = placement;
  const problems: string[] = [];
  if (shape.moeLayers.join(",") !== expected.join(",")) {
    problems.push(`MoE layers [${shape.moeLayers.join(", ")}], the model's are [${expected.join(", ")}]`);
  }
  if (shape.nRoutedExperts !== model.nRoutedExperts)
    problems.push(`${shape.nRoutedExperts} routed experts, the model has ${model.nRoutedExperts}`);
  if (shape.nGroup !== model.nGroup) problems.push(`n_group ${shape.nGroup}, the model's is ${model.nGroup}`);
  if (shape.topkGroup !== model.topkGroup)
    problems.push(`topk_group ${shape.topkGroup}, the model's is ${model.topkGroup}`);
  if (problems.length > 0) {
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      `placement v${placement.version} does not fit the model: ${problems.join("; ")}`,
    );
  }
}

/**
 * This worker's part of the placement. NOT_FOUND when the worker is not in it; FAILED_PRECONDITION
 * when `node` is given and differs from the placement's node for the worker.
 */
export function heldExperts(placement: Placement, workerId: string, node?: string): HeldExperts {
  const slice = placement.sliceOf(workerId);
  if (node !== undefined && node !== slice.node) {
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      `worker ${workerId} runs on node ${node}, but placement v${placement.version} puts it on node ${slice.node}`,
    );
  }
  const P = placement.numPhysical;
  const held = new Uint8Array(placement.numLayers * P);
  const experts = new Map<number, number[]>();
  for (const [l, layer] of placement.shape.moeLayers.entries()) {
    const physical = slice.physical[l] as Int32Array;
    for (const p of physical) held[l * P + p] = 1;
    const logical = [...new Set(slice.logical[l])].sort((a, b) => a - b);
    if (logical.length > 0) experts.set(layer, logical);
  }
  return { workerId, node: slice.node, experts, held, slice };
}
