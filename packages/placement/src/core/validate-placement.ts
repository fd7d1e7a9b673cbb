/**
 * The ≤ topk_group nodes-per-token invariant, checked exactly. A token routes to at most
 * `topkGroup` expert groups; with nodes(g) = the nodes holding any replica of any expert of g,
 * it can reach |∪ nodes(g)| over its groups. A placement is accepted iff the worst case over
 * every choice of `topkGroup` groups is ≤ topkGroup — so a group may span nodes as long as no
 * choice of groups can then reach too many (e.g. when the cluster has ≤ topkGroup nodes).
 */
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { checkPlacementArrays } from "./placement.ts";
import type { Placement } from "./placement.ts";
import { groupSize } from "./placement-shape.ts";

export interface NodeReach {
  readonly moeLayer: number;
  readonly modelLayer: number;
  /** Most distinct nodes any choice of `topkGroup` groups reaches in this layer. */
  readonly nodes: number;
  /** One choice of groups reaching that many (ascending). */
  readonly groups: readonly number[];
  /** Node labels that choice reaches. */
  readonly nodeNames: readonly string[];
  /** Per group: the node labels holding any of its replicas. */
  readonly groupNodes: readonly (readonly string[])[];
}

/** Node indices per expert group in one layer: [groups][nodes held], ascending. */
function groupNodeSets(p: Placement, moeLayer: number): number[][] {
  const P = p.numPhysical;
  const M = p.nodes.length;
  const gs = groupSize(p.shape);
  const mark = new Uint8Array(p.shape.nGroup * M);
  for (let q = 0; q < P; q++) {
    const g = Math.floor(p.physicalToLogical[moeLayer * P + q]! / gs);
    mark[g * M + p.physicalToNode[moeLayer * P + q]!] = 1;
  }
  const sets: number[][] = [];
  for (let g = 0; g < p.shape.nGroup; g++) {
    const s: number[] = [];
    for (let n = 0; n < M; n++) if (mark[g * M + n] === 1) s.push(n);
    sets.push(s);
  }
  return sets;
}

/**
 * Max coverage of `k` sets, exact: depth-first over groups (largest first) with the bound
 * "nodes so far + sizes of the largest remaining picks". nGroup is small (8 for V3).
 */
function maxReach(
  sets: readonly (readonly number[])[],
  k: number,
  numNodes: number,
): { nodes: number; groups: number[] } {
  const order = sets.map((s, g) => ({ g, s })).sort((a, b) => b.s.length - a.s.length || a.g - b.g);
  const use = new Int32Array(numNodes); // multiplicity of each node in the current union
  const chosen: number[] = [];
  let best = -1;
  let bestGroups: number[] = [];
  const visit = (i: number, distinct: number): void => {
    if (chosen.length === k) {
      if (distinct > best) {
        best = distinct;
        bestGroups = [...chosen].sort((a, b) => a - b);
      }
      return;
    }
    const need = k - chosen.length;
    if (order.length - i < need) return;
    let bound = distinct;
    for (let j = i; j < i + need; j++) bound += order[j]!.s.length;
    if (Math.min(bound, numNodes) <= best) return;
    const { g, s } = order[i]!;
    let added = 0;
    for (const n of s) if (use[n]!++ === 0) added++;
    chosen.push(g);
    visit(i + 1, distinct + added);
    chosen.pop();
    for (const n of s) use[n]!--;
    visit(i + 1, distinct);
  };
  visit(0, 0);
  return { nodes: best, groups: bestGroups };
}

/** The exact worst case of nodes a token can reach in one MoE layer under `p`. */
export function worstCaseNodes(p: Placement, moeLayer: number): NodeReach {
  const sets = groupNodeSets(p, moeLayer);
  const { nodes, groups } = maxReach(sets, p.shape.topkGroup, p.nodes.length);
  const reached = new Set<number>();
  for (const g of groups) for (const n of sets[g]!) reached.add(n);
  return {
    moeLayer,
    modelLayer: p.shape.moeLayers[moeLayer]!,
    nodes,
    groups,
    nodeNames: [...reached].sort((a, b) => a - b).map((n) => p.nodes[n]!),
    groupNodes: sets.map((s) => s.map((n) => p.nodes[n]!)),
  };
}

/**
 * Refuses (FAILED_PRECONDITION) a placement that is malformed (logical expert without replica,
 * entries out of range, unknown workers) or that could let a token reach more than
 * `topkGroup` nodes in some layer. Returns the placement when it is sound.
 */
export function validatePlacement(p: Placement): Placement {
  checkPlacementArrays(p);
  const k = p.shape.topkGroup;
  const verdicts = new Map<string, boolean>(); // layers often share their group→nodes map
  for (let l = 0; l < p.numLayers; l++) {
    const sets = groupNodeSets(p, l);
    const key = sets.map((s) => s.join(",")).join("|");
    if (verdicts.get(key) === true) continue;
    // Every group on one node: any k groups reach ≤ k nodes; skip the search.
    const ok = sets.every((s) => s.length <= 1) || maxReach(sets, k, p.nodes.length).nodes <= k;
    if (ok) {
      verdicts.set(key, true);
      continue;
    }
    const reach = worstCaseNodes(p, l);
    const spanning = reach.groupNodes
      .map((names, g) => ({ g, names }))
      .filter(({ names }) => names.length > 1)
      .map(({ g, names }) => `group ${g} on ${names.join(", ")}`);
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      `placement v${p.version} layer ${reach.modelLayer}: expert groups [${reach.groups.join(", ")}] together reach ` +
        `${reach.nodes} nodes (${reach.nodeNames.join(", ")}), more than topk_group = ${k}; ` +
        `groups spanning several nodes: ${spanning.join("; ")}. ` +
        `Keep each expert group (with its replicas) on one node, or on few enough nodes that no ${k} groups reach more than ${k}.`,
      {
        details: {
          layer: String(reach.modelLayer),
          groups: reach.groups.join(","),
          nodes: reach.nodeNames.join(","),
          topkGroup: String(k),
        },
      },
    );
  }
  return p;
}
