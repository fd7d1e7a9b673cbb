/**
 * Per-worker load accounting: rows routed per (MoE layer, physical expert), counted in memory on
 * the hot path (no Redis call per token) and flushed once per window as one MULTI/EXEC pipeline of
 * HINCRBY on the window's hash (fields: see keys.ts) plus an EXPIRE. Hashes from every worker
 * add up, so a reader sees the cluster's load.
 */
import { Code, ExpertMeshError } from "@expertmesh/shared";
import type { Redis } from "ioredis";
import type { Placement } from "../core/placement.ts";
import { PlacementKeys, loadField } from "./keys.ts";
import type { LoadWindow } from "./keys.ts";

export interface LoadRecorderOptions {
  /** The placement whose physical ids `record` receives. */
  readonly placement: Placement;
  readonly keys?: PlacementKeys;
  /** Lifetime of a window hash after its last flush, seconds; 86 400 by default. */
  readonly ttlSeconds?: number;
}

export interface FlushResult {
  readonly key: string;
  /** Hash fields incremented (non-zero counters). */
  readonly fields: number;
  /** Rows flushed, summed over layers and experts. */
  readonly rows: number;
}

interface Counters {
  readonly placement: Placement;
  /** [layers, P] rows per physical expert */
  readonly rows: Float64Array;
}

export class LoadRecorder {
  readonly keys: PlacementKeys;
  readonly ttlSeconds: number;
  readonly #redis: Redis;
  /** Counts per placement version since the last flush (a window may straddle a rebalance). */
  #byVersion = new Map<number, Counters>();
  #current: Counters;

  constructor(redis: Redis, options: LoadRecorderOptions) {
    this.#redis = redis;
    this.keys = options.keys ?? new PlacementKeys();
    this.ttlSeconds = options.ttlSeconds ?? 86_400;
    if (!Number.isInteger(this.ttlSeconds) || this.ttlSeconds < 1) {
      throw new ExpertMeshError(
        Code.INVALID_ARGUMENT,
        `ttlSeconds: must be a positive integer, got ${this.ttlSeconds}`,
      );
    }
    this.#current = this.#countersFor(options.placement);
  }

  get placement(): Placement {
    return this.#current.placement;
  }

  /** Counts from now on are for `placement`'s physical ids; earlier counts stay until flushed. */
  setPlacement(placement: Placement): void {
    this.#current = this.#countersFor(placement);
  }

  /** Adds `rows` (an integer) to one physical expert of one MoE layer (position, not model index). */
  record(moeLayer: number, physical: number, rows = 1): void {
    this.#current.rows[moeLayer * this.#current.placement.numPhysical + physical]! += rows;
  }

  /** Counts one row per entry ≥ 0 of a [n, k] physical-id array (WorkerDispatch.physical); −1 is skipped. */
  recordSlots(moeLayer: number, physical: Int32Array): void {
    const rows = this.#current.rows;
    const base = moeLayer * this.#current.placement.numPhysical;
    for (const p of physical) if (p >= 0) rows[base + p]!++;
  }

  /** Rows counted and not yet flushed. */
  pendingRows(): number {
    let total = 0;
    for (const c of this.#byVersion.values()) for (const r of c.rows) total += r;
    return total;
  }

  /**
   * Adds every non-zero counter to the window's hash in one MULTI/EXEC pipeline (all or nothing)
   * and resets the counters. When Redis fails the counts are kept for the next flush.
   */
  async flush(window: LoadWindow): Promise<FlushResult> {
    const key = this.keys.load(window);
    const taken = [...this.#byVersion.values()];
    this.#byVersion = new Map();
    this.#current = this.#countersFor(this.#current.placement);

    const tx = this.#redis.multi();
    let fields = 0;
    let rows = 0;
    for (const { placement, rows: counts } of taken) {
      const P = placement.numPhysical;
      const { moeLayers } = placement.shape;
      for (let i = 0; i < counts.length; i++) {
        const c = counts[i]!;
        if (c === 0) continue;
        const l = Math.floor(i / P);
        tx.hincrby(
          key,
          loadField(placement.version, moeLayers[l]!, placement.physicalToLogical[i]!, i - l * P),
          c,
        );
        fields++;
        rows += c;
      }
    }
    if (fields === 0) return { key, fields, rows }; // nothing queued is sent: no exec, no round trip
    tx.expire(key, this.ttlSeconds);
    try {
      const results = await tx.exec();
      const failed = results?.find(([err]) => err !== null);
      if (results === null || failed !== undefined) throw failed?.[0] ?? new Error("transaction aborted");
    } catch (err) {
      for (const c of taken) this.#addBack(c);
      throw new ExpertMeshError(Code.UNAVAILABLE, `flushing load window ${String(window)} failed`, {
        cause: err,
      });
    }
    return { key, fields, rows };
  }

  #countersFor(placement: Placement): Counters {
    const size = placement.numLayers * placement.numPhysical;
    let c = this.#byVersion.get(placement.version);
    if (c === undefined) {
      c = { placement, rows: new Float64Array(size) };
      this.#byVersion.set(placement.version, c);
    } else if (c.rows.length !== size) {
      throw new ExpertMeshError(
        Code.FAILED_PRECONDITION,
        `two different placements carry version ${placement.version} (${c.rows.length / c.placement.numPhysical}×${c.placement.numPhysical} vs ${placement.numLayers}×${placement.numPhysical} experts)`,
      );
    }
    return c;
  }

  #addBack(old: Counters): void {
    const into = this.#countersFor(old.placement);
    for (let i = 0; i < old.rows.length; i++) into.rows[i]! += old.rows[i]!;
  }
}
