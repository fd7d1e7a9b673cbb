/**
 * Reads load windows written by every worker's LoadRecorder (one round trip for any number of
 * windows) into per-layer arrays: rows per physical expert of a given placement, and rows per
 * logical expert over all placement versions the windows saw.
 */
import { Code, ExpertMeshError } from "@expertmesh/shared";
import type { Redis } from "ioredis";
import type { Placement } from "../core/placement.ts";
import { PlacementKeys, parseLoadField } from "./keys.ts";
import type { LoadWindow } from "./keys.ts";

export interface LoadReaderOptions {
  readonly keys?: PlacementKeys;
}

export interface WindowLoad {
  readonly windows: readonly string[];
  readonly placementVersion: number;
  /** Per MoE layer: [P] rows per physical expert of the placement read with (its version's rows only). */
  readonly physical: readonly Float64Array[];
  /** Per MoE layer: [E] rows per logical expert, whatever placement version counted them. */
  readonly logical: readonly Float64Array[];
  /** All rows in the windows. */
  readonly totalRows: number;
  /** Rows counted under other placement versions (in `logical`, not in `physical`). */
  readonly otherVersionRows: number;
}

export class LoadReader {
  readonly keys: PlacementKeys;
  readonly #redis: Redis;

  constructor(redis: Redis, options: LoadReaderOptions = {}) {
    this.#redis = redis;
    this.keys = options.keys ?? new PlacementKeys();
  }

  /** Sums one or several windows; a window nobody flushed (or that expired) reads as zero. */
  async read(windows: LoadWindow | readonly LoadWindow[], placement: Placement): Promise<WindowLoad> {
    const list = (Array.isArray(windows) ? windows : [windows]) as readonly LoadWindow[];
    const keys = list.map((w) => this.keys.load(w));
    const pipe = this.#redis.pipeline();
    for (const key of keys) pipe.hgetall(key);
    const results = (await pipe.exec()) ?? [];

    const { nRoutedExperts: E } = placement.shape;
    const P = placement.numPhysical;
    const physical = Array.from({ length: placement.numLayers }, () => new Float64Array(P));
    const logical = Array.from({ length: placement.numLayers }, () => new Float64Array(E));
    const moeLayerOf = new Map(placement.shape.moeLayers.map((layer, i) => [layer, i]));
    let totalRows = 0;
    let otherVersionRows = 0;
    for (const [i, [err, hash]] of results.entries()) {
      if (err !== null)
        throw new ExpertMeshError(Code.UNAVAILABLE, `reading load window ${keys[i]} failed`, { cause: err });
      for (const [field, value] of Object.entries(hash as Record<string, string>)) {
        const f = parseLoadField(field);
        const rows = Number(value);
        if (f === undefined || !Number.isFinite(rows)) {
          throw new ExpertMeshError(
            Code.DATA_LOSS,
            `${keys[i]}: malformed load field ${JSON.stringify(field)} = ${JSON.stringify(value)}`,
          );
        }
        const l = moeLayerOf.get(f.modelLayer);
        if (l === undefined || f.logical >= E) {
          throw new ExpertMeshError(
            Code.FAILED_PRECONDITION,
            `${keys[i]}: field ${field} (layer ${f.modelLayer}, logical expert ${f.logical}) does not fit the model of placement v${placement.version}`,
          );
        }
        totalRows += rows;
        logical[l]![f.logical]! += rows;
        if (f.placementVersion !== placement.version) {
          otherVersionRows += rows;
          continue;
        }
        if (f.physical >= P || placement.physicalToLogical[l * P + f.physical] !== f.logical) {
          throw new ExpertMeshError(
            Code.DATA_LOSS,
            `${keys[i]}: field ${field} disagrees with placement v${placement.version} (physical ${f.physical} of layer ${f.modelLayer})`,
          );
        }
        physical[l]![f.physical]! += rows;
      }
    }
    return {
      windows: list.map(String),
      placementVersion: placement.version,
      physical,
      logical,
      totalRows,
      otherVersionRows,
    };
  }
}
