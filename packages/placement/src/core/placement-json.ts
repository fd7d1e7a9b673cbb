/**
 * JSON form of a placement (stored in Redis, shown on the ops dashboard). Per-layer arrays keep
 * it readable; workers are referenced by index into `workers`. Loading validates: a document
 * that breaks the ≤ topk_group nodes invariant is refused exactly as `validatePlacement` does.
 */
import { invalidArgument } from "@expertmesh/shared";
import { createPlacement } from "./create-placement.ts";
import type { Placement } from "./placement.ts";

export const PLACEMENT_FORMAT = "expertmesh.placement/v1";

export interface PlacementJSON {
  format: typeof PLACEMENT_FORMAT;
  version: number;
  shape: { moeLayers: number[]; nRoutedExperts: number; nGroup: number; topkGroup: number };
  workers: { workerId: string; node: string }[];
  numPhysical: number;
  /** One entry per MoE layer, in `shape.moeLayers` order. */
  layers: { physicalToLogical: number[]; physicalToWorker: number[] }[];
}

export function placementToJSON(p: Placement): PlacementJSON {
  const P = p.numPhysical;
  const layers: PlacementJSON["layers"] = [];
  for (let l = 0; l < p.numLayers; l++) {
    layers.push({
      physicalToLogical: Array.from(p.physicalToLogical.subarray(l * P, (l + 1) * P)),
      physicalToWorker: Array.from(p.physicalToWorker.subarray(l * P, (l + 1) * P)),
    });
  }
  return {
    format: PLACEMENT_FORMAT,
    version: p.version,
    shape: { ...p.shape, moeLayers: [...p.shape.moeLayers] },
    workers: p.workers.map((w) => ({ workerId: w.workerId, node: w.node })),
    numPhysical: P,
    layers,
  };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isNumberArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((x) => typeof x === "number");
}

function numberArray(v: unknown, field: string): number[] {
  if (!isNumberArray(v)) throw invalidArgument(field, "must be an array of numbers");
  return v;
}

/** Parses (a string or an already-parsed object) and validates; INVALID_ARGUMENT / FAILED_PRECONDITION. */
export function placementFromJSON(json: unknown): Placement {
  let doc: unknown = json;
  if (typeof json === "string") {
    try {
      doc = JSON.parse(json);
    } catch (err) {
      throw invalidArgument("placement", `not valid JSON (${(err as Error).message})`);
    }
  }
  if (!isRecord(doc)) throw invalidArgument("placement", "must be a JSON object");
  if (doc.format !== PLACEMENT_FORMAT) {
    throw invalidArgument(
      "placement.format",
      `expected "${PLACEMENT_FORMAT}", got ${JSON.stringify(doc.format)}`,
    );
  }
  const { shape, workers, layers } = doc;
  if (!isRecord(shape)) throw invalidArgument("placement.shape", "must be an object");
  if (!Array.isArray(workers) || !workers.every(isRecord))
    throw invalidArgument("placement.workers", "must be an array of objects");
  if (!Array.isArray(layers) || !layers.every(isRecord))
    throw invalidArgument("placement.layers", "must be an array of objects");
  const moeLayers = numberArray(shape.moeLayers, "placement.shape.moeLayers");
  if (layers.length !== moeLayers.length) {
    throw invalidArgument(
      "placement.layers",
      `has ${layers.length} entries for ${moeLayers.length} MoE layers`,
    );
  }
  const numPhysical = doc.numPhysical;
  if (typeof numPhysical !== "number") throw invalidArgument("placement.numPhysical", "must be a number");
  const physicalToLogical: number[] = [];
  const physicalToWorker: number[] = [];
  for (const [l, layer] of layers.entries()) {
    const p2l = numberArray(layer.physicalToLogical, `placement.layers[${l}].physicalToLogical`);
    const p2w = numberArray(layer.physicalToWorker, `placement.layers[${l}].physicalToWorker`);
    if (p2l.length !== numPhysical || p2w.length !== numPhysical) {
      throw invalidArgument(
        `placement.layers[${l}]`,
        `each array must have numPhysical = ${numPhysical} entries`,
      );
    }
    physicalToLogical.push(...p2l);
    physicalToWorker.push(...p2w);
  }
  return createPlacement({
    version: doc.version as number,
    shape: {
      moeLayers,
      nRoutedExperts: shape.nRoutedExperts as number,
      nGroup: shape.nGroup as number,
      topkGroup: shape.topkGroup as number,
    },
    workers: workers.map((w) => ({ workerId: w.workerId as string, node: w.node as string })),
    numPhysical,
    physicalToLogical,
    physicalToWorker,
  });
}
