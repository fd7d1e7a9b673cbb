import {
  MemberStatus as WireMemberStatus,
  RebalanceMode as WireRebalanceMode,
  WireDtype,
} from "@expertmesh/proto";
import type { GetClusterStateResponse } from "@expertmesh/proto";

export type MemberStatus = "starting" | "serving" | "draining" | "unavailable" | "unknown";
export type RebalanceMode = "off" | "bias" | "placement" | "unknown";
export type WireFormat = "float32" | "bf16" | "fp8_e4m3" | "unknown";

/** The served model's shape. */
export interface ModelInfo {
  name: string;
  numLayers: number;
  /** Layers [0, firstKDenseReplace) are dense; the rest are MoE layers. */
  firstKDenseReplace: number;
  hiddenSize: number;
  vocabSize: number;
  nRoutedExperts: number;
  nSharedExperts: number;
  numExpertsPerTok: number;
  nGroup: number;
  topkGroup: number;
  maxContextLength: number;
  weightDtype: string;
  dispatchDtype: WireFormat;
  combineDtype: WireFormat;
}

/** One data-parallel attention node and its scheduler load. */
export interface AttentionNode {
  id: string;
  address: string;
  status: MemberStatus;
  running: number;
  waiting: number;
  freeKvBlocks: number;
  totalKvBlocks: number;
  /** Share of the KV cache in use, 0..1 (0 when the node reports no blocks). */
  kvUsage: number;
}

/** One expert-worker and the physical experts it holds. */
export interface Worker {
  workerId: string;
  /** The routing node (failure domain) it runs on. */
  node: string;
  address: string;
  status: MemberStatus;
  /** [moe layers] physical expert ids held, with the logical expert each copies. */
  slices: { layer: number; physicalExpertIds: number[]; logicalExpertIds: number[] }[];
}

/** Where the physical experts of one MoE layer live. */
export interface LayerPlacement {
  layer: number;
  /** [num_physical] logical expert of each physical expert. */
  physicalToLogical: number[];
  /** [num_physical] index into ClusterState.workers. */
  physicalToWorker: number[];
}

/** Rows routed per physical expert during one load window. */
export interface LoadWindow {
  windowId: number;
  startUnixMs: number;
  endUnixMs: number;
  /** [moe layers] rows per physical expert (index = physical expert id). */
  layers: { layer: number; physicalRows: number[] }[];
}

/** A snapshot of the cluster as the router sees it. */
export interface ClusterState {
  model: ModelInfo | undefined;
  /** 0 before the first placement. */
  placementVersion: number;
  rebalanceMode: RebalanceMode;
  attentionNodes: AttentionNode[];
  workers: Worker[];
  placement: LayerPlacement[];
  /** The last complete load window; undefined before the first one closes. */
  lastWindow: LoadWindow | undefined;
}

const MEMBER_STATUS: Readonly<Partial<Record<WireMemberStatus, MemberStatus>>> = {
  [WireMemberStatus.STARTING]: "starting",
  [WireMemberStatus.SERVING]: "serving",
  [WireMemberStatus.DRAINING]: "draining",
  [WireMemberStatus.UNAVAILABLE]: "unavailable",
};
const REBALANCE_MODE: Readonly<Partial<Record<WireRebalanceMode, RebalanceMode>>> = {
  [WireRebalanceMode.OFF]: "off",
  [WireRebalanceMode.BIAS]: "bias",
  [WireRebalanceMode.PLACEMENT]: "placement",
};
const WIRE_FORMAT: Readonly<Partial<Record<WireDtype, WireFormat>>> = {
  [WireDtype.FLOAT32]: "float32",
  [WireDtype.BF16]: "bf16",
  [WireDtype.FP8_E4M3]: "fp8_e4m3",
};

/** The wire snapshot in the SDK's words (uint64 counts become numbers: rows fit in 2^53). */
export function toClusterState(response: GetClusterStateResponse): ClusterState {
  const m = response.model;
  return {
    model:
      m === undefined
        ? undefined
        : {
            name: m.name,
            numLayers: m.numLayers,
            firstKDenseReplace: m.firstKDenseReplace,
            hiddenSize: m.hiddenSize,
            vocabSize: m.vocabSize,
            nRoutedExperts: m.nRoutedExperts,
            nSharedExperts: m.nSharedExperts,
            numExpertsPerTok: m.numExpertsPerTok,
            nGroup: m.nGroup,
            topkGroup: m.topkGroup,
            maxContextLength: m.maxContextLength,
            weightDtype: m.weightDtype,
            dispatchDtype: WIRE_FORMAT[m.dispatchDtype] ?? "unknown",
            combineDtype: WIRE_FORMAT[m.combineDtype] ?? "unknown",
          },
    placementVersion: response.placementVersion,
    rebalanceMode: REBALANCE_MODE[response.rebalanceMode] ?? "unknown",
    attentionNodes: response.attentionNodes.map((n) => ({
      id: n.id,
      address: n.address,
      status: MEMBER_STATUS[n.status] ?? "unknown",
      running: n.running,
      waiting: n.waiting,
      freeKvBlocks: n.freeKvBlocks,
      totalKvBlocks: n.totalKvBlocks,
      kvUsage: n.totalKvBlocks === 0 ? 0 : 1 - n.freeKvBlocks / n.totalKvBlocks,
    })),
    workers: response.workers.map((w) => ({
      workerId: w.workerId,
      node: w.node,
      address: w.address,
      status: MEMBER_STATUS[w.status] ?? "unknown",
      slices: w.slices.map((s) => ({
        layer: s.layer,
        physicalExpertIds: s.physicalExpertIds,
        logicalExpertIds: s.logicalExpertIds,
      })),
    })),
    placement: response.placement.map((p) => ({
      layer: p.layer,
      physicalToLogical: p.physicalToLogical,
      physicalToWorker: p.physicalToWorker,
    })),
    lastWindow:
      response.lastWindow === undefined
        ? undefined
        : {
            windowId: Number(response.lastWindow.windowId),
            startUnixMs: Number(response.lastWindow.startUnixMs),
            endUnixMs: Number(response.lastWindow.endUnixMs),
            layers: response.lastWindow.layers.map((l) => ({
              layer: l.layer,
              physicalRows: l.physicalRows.map(Number),
            })),
          },
  };
}

/** The attention nodes, serving ones first, then by load (running + waiting), then by id. */
export function attentionNodes(state: ClusterState): AttentionNode[] {
  const rank = (n: AttentionNode): number => (n.status === "serving" ? 0 : 1);
  return [...state.attentionNodes].sort(
    (a, b) =>
      rank(a) - rank(b) || a.running + a.waiting - (b.running + b.waiting) || a.id.localeCompare(b.id),
  );
}

/** Load of one MoE layer in the last window. */
export interface LayerLoadSummary {
  layer: number;
  /** Rows routed in the layer (each token counts once per chosen expert). */
  totalRows: number;
  /** [num_physical] rows per physical expert. */
  physicalRows: number[];
  /** [n_routed_experts] rows per logical expert, its replicas summed. */
  logicalRows: number[];
  /** Rows per worker id. */
  workerRows: Record<string, number>;
  /** Rows per routing node. */
  nodeRows: Record<string, number>;
  /** Busiest logical expert's rows over the mean (1 = perfectly even; 0 for an idle layer). */
  expertImbalance: number;
  /** Busiest worker's rows over the mean over workers: what placement rebalancing minimises. */
  workerImbalance: number;
  /** Up to 8 busiest logical experts, busiest first. */
  hottestExperts: { expert: number; rows: number }[];
}

/** Per-layer load of the last window, with the placement that was in force. */
export interface ExpertLoadSummary {
  windowId: number;
  durationMs: number;
  placementVersion: number;
  layers: LayerLoadSummary[];
}

const HOTTEST = 8;

/**
 * Summarises the last load window per MoE layer: rows per logical expert (replicas summed
 * through the placement), per worker and per node, and how uneven they are. Undefined before
 * the first window closes.
 */
export function expertLoad(state: ClusterState): ExpertLoadSummary | undefined {
  const window = state.lastWindow;
  if (window === undefined) return undefined;
  const placementByLayer = new Map(state.placement.map((p) => [p.layer, p]));
  const layers = window.layers.map((load): LayerLoadSummary => {
    const placement = placementByLayer.get(load.layer);
    const rows = load.physicalRows;
    let logicalCount = state.model?.nRoutedExperts ?? 0;
    for (const e of placement?.physicalToLogical ?? []) logicalCount = Math.max(logicalCount, e + 1);
    // Without a placement for the layer, physical expert p is taken to be logical expert p.
    if (placement === undefined) logicalCount = Math.max(logicalCount, rows.length);
    const logicalRows = new Array<number>(logicalCount).fill(0);
    const workerRows: Record<string, number> = {};
    const nodeRows: Record<string, number> = {};
    for (const w of state.workers) {
      workerRows[w.workerId] = 0;
      nodeRows[w.node] = 0;
    }
    let totalRows = 0;
    for (let p = 0; p < rows.length; p++) {
      const r = rows[p] as number;
      totalRows += r;
      const logical = placement === undefined ? p : placement.physicalToLogical[p];
      if (logical !== undefined) logicalRows[logical] = (logicalRows[logical] ?? 0) + r;
      const workerIndex = placement?.physicalToWorker[p];
      const worker = workerIndex === undefined ? undefined : state.workers[workerIndex];
      if (worker !== undefined) {
        workerRows[worker.workerId] = (workerRows[worker.workerId] ?? 0) + r;
        nodeRows[worker.node] = (nodeRows[worker.node] ?? 0) + r;
      }
    }
    const hottestExperts = logicalRows
      .map((r, expert) => ({ expert, rows: r }))
      .filter((e) => e.rows > 0)
      .sort((a, b) => b.rows - a.rows || a.expert - b.expert)
      .slice(0, HOTTEST);
    return {
      layer: load.layer,
      totalRows,
      physicalRows: [...rows],
      logicalRows,
      workerRows,
      nodeRows,
      expertImbalance: maxOverMean(logicalRows),
      workerImbalance: maxOverMean(Object.values(workerRows)),
      hottestExperts,
    };
  });
  return {
    windowId: window.windowId,
    durationMs: window.endUnixMs - window.startUnixMs,
    placementVersion: state.placementVersion,
    layers,
  };
}

function maxOverMean(values: readonly number[]): number {
  if (values.length === 0) return 0;
  let sum = 0;
  let max = 0;
  for (const v of values) {
    sum += v;
    max = Math.max(max, v);
  }
  return sum === 0 ? 0 : max / (sum / values.length);
}
