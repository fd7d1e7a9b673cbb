/**
 * @expertmesh/placement — where experts live and how much they are used: the versioned
 * placement (logical → physical → worker → node) with its ≤ topk_group nodes-per-token check,
 * dispatch planning over it, and its Redis side (versions, pub/sub, load windows).
 */
export { checkShape, checkWorkers, groupSize } from "./core/placement-shape.ts";
export type { PlacementShape, PlacementWorker } from "./core/placement-shape.ts";
export { Placement } from "./core/placement.ts";
export type { PlacementSpec, WorkerSlice } from "./core/placement.ts";
export { createPlacement } from "./core/create-placement.ts";
export { createDefaultPlacement } from "./core/create-default-placement.ts";
export type { DefaultPlacementOptions } from "./core/create-default-placement.ts";
export { validatePlacement, worstCaseNodes } from "./core/validate-placement.ts";
export type { NodeReach } from "./core/validate-placement.ts";
export { planDispatch } from "./core/plan-dispatch.ts";
export type { DispatchInput, DispatchPlan, WorkerDispatch } from "./core/plan-dispatch.ts";
export { PLACEMENT_FORMAT, placementFromJSON, placementToJSON } from "./core/placement-json.ts";
export type { PlacementJSON } from "./core/placement-json.ts";

export { PlacementKeys, loadField, parseLoadField } from "./redis/keys.ts";
export type { KeyOptions, LoadField, LoadWindow } from "./redis/keys.ts";
export { PlacementStore } from "./redis/placement-store.ts";
export type {
  PlacementStoreOptions,
  PlacementSubscribeOptions,
  PlacementSubscription,
} from "./redis/placement-store.ts";
export { LoadRecorder } from "./redis/load-recorder.ts";
export type { FlushResult, LoadRecorderOptions } from "./redis/load-recorder.ts";
export { LoadReader } from "./redis/load-reader.ts";
export type { LoadReaderOptions, WindowLoad } from "./redis/load-reader.ts";
