/**
 * Every Redis key, channel and hash field this package uses, built here and nowhere else.
 *
 *   <prefix>:{<cluster>}:placement:current   string   current placement version
 *   <prefix>:{<cluster>}:placement:v:<N>     string   placement N as JSON (placementToJSON)
 *   <prefix>:{<cluster>}:placement:versions  zset     stored versions (score = member = N)
 *   <prefix>:{<cluster>}:placement:updates   channel  a version number, published when it becomes current
 *   <prefix>:{<cluster>}:load:<window>       hash     rows routed in one load window (fields below), with a TTL
 *
 * The cluster name is a Redis Cluster hash tag, so a cluster's keys share one slot and the publish
 * script may touch several of them.
 *
 * Load hash field: `<placementVersion>:<modelLayer>:<logical>:<physical>` → rows. The version
 * says which placement the physical id belongs to (a window may straddle a rebalance); the logical
 * id lets a reader aggregate per logical expert without that placement.
 */
import { invalidArgument } from "@expertmesh/shared";

export interface KeyOptions {
  /** "expertmesh" by default. */
  readonly prefix?: string;
  /** Name of the serving cluster (one model deployment); "default" by default. */
  readonly cluster?: string;
}

const NAME = /^[A-Za-z0-9_.-]+$/;

export class PlacementKeys {
  readonly prefix: string;
  readonly cluster: string;
  readonly current: string;
  readonly versions: string;
  readonly updates: string;
  readonly #base: string;

  constructor(options: KeyOptions = {}) {
    this.prefix = options.prefix ?? "expertmesh";
    this.cluster = options.cluster ?? "default";
    if (!NAME.test(this.prefix))
      throw invalidArgument("prefix", `must match ${String(NAME)}, got ${JSON.stringify(this.prefix)}`);
    if (!NAME.test(this.cluster))
      throw invalidArgument("cluster", `must match ${String(NAME)}, got ${JSON.stringify(this.cluster)}`);
    this.#base = `${this.prefix}:{${this.cluster}}`;
    this.current = `${this.#base}:placement:current`;
    this.versions = `${this.#base}:placement:versions`;
    this.updates = `${this.#base}:placement:updates`;
  }

  /** Key of one stored placement version. */
  version(version: number): string {
    return `${this.#base}:placement:v:${version}`;
  }

  /** Key of one load window's hash. */
  load(window: LoadWindow): string {
    const w = String(window);
    if (!NAME.test(w))
      throw invalidArgument("window", `must match ${String(NAME)}, got ${JSON.stringify(w)}`);
    return `${this.#base}:load:${w}`;
  }
}

/** A load window id, e.g. `Math.floor(Date.now() / windowMs)`. */
export type LoadWindow = number | string;

export interface LoadField {
  readonly placementVersion: number;
  readonly modelLayer: number;
  readonly logical: number;
  readonly physical: number;
}

export function loadField(
  placementVersion: number,
  modelLayer: number,
  logical: number,
  physical: number,
): string {
  return `${placementVersion}:${modelLayer}:${logical}:${physical}`;
}

const FIELD = /^(\d+):(\d+):(\d+):(\d+)$/;

/** Parses a load hash field; undefined when it is not one. */
export function parseLoadField(field: string): LoadField | undefined {
  const m = FIELD.exec(field);
  if (m === null) return undefined;
  return {
    placementVersion: Number(m[1]),
    modelLayer: Number(m[2]),
    logical: Number(m[3]),
    physical: Number(m[4]),
  };
}
