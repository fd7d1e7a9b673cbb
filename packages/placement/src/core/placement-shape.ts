/**
 * The model facts a placement is about (the MoE part of a DeepSeek-V3-style config) and the
 * workers it places experts on. Checked once, when a placement is built.
 */
import { invalidArgument } from "@expertmesh/shared";

export interface PlacementShape {
  /**
   * Model layer indices of the MoE layers, in order (V3: 3..60). A placement's typed arrays are
   * indexed by the position in this list, called `moeLayer` throughout; `modelLayer` is the
   * model's own index.
   */
  readonly moeLayers: readonly number[];
  /** Logical experts per layer (V3: 256). */
  readonly nRoutedExperts: number;
  /** Expert groups: group g holds logical experts g·E/nGroup .. (g+1)·E/nGroup − 1 (V3: 8). */
  readonly nGroup: number;
  /** Groups a token may route to, hence the most nodes it may reach (V3: 4). */
  readonly topkGroup: number;
}

export interface PlacementWorker {
  readonly workerId: string;
  /** The routing node (failure/network domain) this worker runs on. */
  readonly node: string;
}

/** Validates the shape; throws INVALID_ARGUMENT naming the bad field. Returns a frozen copy. */
export function checkShape(shape: PlacementShape): PlacementShape {
  const { moeLayers, nRoutedExperts, nGroup, topkGroup } = shape;
  if (moeLayers.length === 0) {
    throw invalidArgument("moeLayers", "must list at least one MoE layer index");
  }
  const seen = new Set<number>();
  for (const l of moeLayers) {
    if (!Number.isInteger(l) || l < 0)
      throw invalidArgument("moeLayers", `layer index ${String(l)} is not a non-negative integer`);
    if (seen.has(l)) throw invalidArgument("moeLayers", `layer ${l} is listed twice`);
    seen.add(l);
  }
  if (!Number.isInteger(nRoutedExperts) || nRoutedExperts < 1) {
    throw invalidArgument("nRoutedExperts", `must be a positive integer, got ${String(nRoutedExperts)}`);
  }
  if (!Number.isInteger(nGroup) || nGroup < 1 || nRoutedExperts % nGroup !== 0) {
    throw invalidArgument(
      "nGroup",
      `must be a positive integer dividing nRoutedExperts ${nRoutedExperts}, got ${String(nGroup)}`,
    );
  }
  if (!Number.isInteger(topkGroup) || topkGroup < 1 || topkGroup > nGroup) {
    throw invalidArgument(
      "topkGroup",
      `must be an integer in 1..nGroup (${nGroup}), got ${String(topkGroup)}`,
    );
  }
  return Object.freeze({ moeLayers: Object.freeze([...moeLayers]), nRoutedExperts, nGroup, topkGroup });
}

/** Validates the worker list (non-empty, unique ids, a node each); returns a frozen copy. */
export function checkWorkers(workers: readonly PlacementWorker[]): readonly PlacementWorker[] {
  if (workers.length === 0) throw invalidArgument("workers", "must list at least one worker");
  const ids = new Set<string>();
  const out: PlacementWorker[] = [];
  for (const [i, w] of workers.entries()) {
    if (typeof w.workerId !== "string" || w.workerId === "")
      throw invalidArgument("workers", `worker #${i} has no workerId`);
    if (typeof w.node !== "string" || w.node === "")
      throw invalidArgument("workers", `worker ${w.workerId} has no node`);
    if (ids.has(w.workerId)) throw invalidArgument("workers", `workerId ${w.workerId} is listed twice`);
    ids.add(w.workerId);
    out.push(Object.freeze({ workerId: w.workerId, node: w.node }));
  }
  return Object.freeze(out);
}

/** Experts per group (E / nGroup). */
export function groupSize(shape: PlacementShape): number {
  return shape.nRoutedExperts / shape.nGroup;
}
