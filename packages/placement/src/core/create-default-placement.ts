/**
 * The default placement: no replicas (physical id = logical id), each expert group wholly on one
 * node so a token reaches ≤ topk_group nodes, groups dealt to nodes in contiguous balanced
 * chunks, and a node's experts dealt to its workers in contiguous balanced chunks.
 */
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { createPlacement } from "./create-placement.ts";
import type { Placement } from "./placement.ts";
import { checkShape, checkWorkers, groupSize } from "./placement-shape.ts";
import type { PlacementShape, PlacementWorker } from "./placement-shape.ts";

export interface DefaultPlacementOptions extends PlacementShape {
  readonly workers: readonly PlacementWorker[];
  /** 1 by default. */
  readonly version?: number;
  /**
   * More nodes than expert groups (or more workers on a node than its experts) leaves workers
   * with nothing to serve. Refused unless this is true.
   */
  readonly allowIdleWorkers?: boolean;
}

/** Start (inclusive) of chunk `i` of `n` items split into `parts` balanced contiguous chunks. */
function chunkStart(n: number, parts: number, i: number): number {
  return Math.floor((i * n) / parts);
}

export function createDefaultPlacement(options: DefaultPlacementOptions): Placement {
  const shape = checkShape(options);
  const workers = checkWorkers(options.workers);
  const { nGroup: G, nRoutedExperts: E } = shape;
  const gs = groupSize(shape);

  const workersOfNode = new Map<string, number[]>();
  for (const [w, { node }] of workers.entries()) {
    const list = workersOfNode.get(node);
    if (list === undefined) workersOfNode.set(node, [w]);
    else list.push(w);
  }
  const nodes = [...workersOfNode.keys()];
  const M = nodes.length;
  if (M > G && options.allowIdleWorkers !== true) {
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      `default placement: ${M} nodes but only ${G} expert groups; each group lives on one node, so nodes ` +
        `${nodes.slice(G).join(", ")} would hold no experts. Use at most ${G} nodes or set allowIdleWorkers.`,
      { details: { nodes: String(M), nGroup: String(G) } },
    );
  }

  const expertWorker = new Int32Array(E); // [E] worker index of each logical expert
  const idle: string[] = [];
  // With more nodes than groups (or workers than experts) the surplus ones, last listed, get nothing.
  const usedNodes = Math.min(M, G);
  for (const [k, node] of nodes.entries()) {
    const ws = workersOfNode.get(node)!;
    if (k >= usedNodes) {
      for (const w of ws) idle.push(workers[w]!.workerId);
      continue;
    }
    const first = chunkStart(G, usedNodes, k) * gs;
    const n = chunkStart(G, usedNodes, k + 1) * gs - first; // experts on this node
    const usedWorkers = Math.min(ws.length, n);
    for (const [j, w] of ws.entries()) {
      if (j >= usedWorkers) {
        idle.push(workers[w]!.workerId);
        continue;
      }
      expertWorker.fill(w, first + chunkStart(n, usedWorkers, j), first + chunkStart(n, usedWorkers, j + 1));
    }
  }
  if (idle.length > 0 && options.allowIdleWorkers !== true) {
    // Only reachable here through a node with more workers than experts (surplus nodes refused above).
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      `default placement: workers ${idle.join(", ")} would hold no experts (more workers on their node than experts ` +
        `of its groups). Use fewer workers there or set allowIdleWorkers.`,
      { details: { idleWorkers: idle.join(",") } },
    );
  }

  const L = shape.moeLayers.length;
  const physicalToLogical = new Int32Array(L * E);
  const physicalToWorker = new Int32Array(L * E);
  for (let l = 0; l < L; l++) {
    for (let e = 0; e < E; e++) physicalToLogical[l * E + e] = e;
    physicalToWorker.set(expertWorker, l * E);
  }
  return createPlacement({
    version: options.version ?? 1,
    shape,
    workers,
    numPhysical: E,
    physicalToLogical,
    physicalToWorker,
  });
}
