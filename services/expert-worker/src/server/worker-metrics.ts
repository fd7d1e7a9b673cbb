/**
 * The worker's Prometheus metrics, on the service's own registry. Per-expert load is read from
 * the core's counters when scraped (no label lookup per token on the hot path).
 */
import { Code, Counter, Gauge, Histogram, exponentialBuckets } from "@expertmesh/shared";
import type { Registry } from "@expertmesh/shared";
import type { ExpertWorker } from "../core/expert-worker.ts";

export interface WorkerMetrics {
  /** Rows computed, per model layer. */
  readonly rows: Counter<"layer">;
  /** Dispatch requests answered, per model layer and status code name (OK or the in-band error). */
  readonly requests: Counter<"layer" | "code">;
  /** Time from receiving a request to having its sums. */
  readonly latency: Histogram<"layer">;
  /** Requests being computed now. */
  readonly inFlight: Gauge;
  /** Open Dispatch streams. */
  readonly streams: Gauge;
  /** Load-window flushes to Redis, by outcome (ok / error). */
  readonly loadFlushes: Counter<"outcome">;
}

export function createWorkerMetrics(registry: Registry, worker: ExpertWorker): WorkerMetrics {
  const { placement } = worker;
  const P = placement.numPhysical;
  const reported = new Float64Array(worker.servedSlots.length);
  // Rows served per (layer, logical, physical) expert: the load the rebalancer balances.
  new Counter({
    name: "expertmesh_worker_expert_rows_total",
    help: "Rows served per physical expert (slots computed), by model layer, logical and physical expert id",
    labelNames: ["layer", "logical", "physical"] as const,
    registers: [registry],
    collect() {
      const served = worker.servedSlots;
      for (let i = 0; i < served.length; i++) {
        const delta = (served[i] as number) - (reported[i] as number);
        if (delta <= 0) continue;
        const l = Math.floor(i / P);
        this.inc(
          {
            layer: String(placement.shape.moeLayers[l]),
            logical: String(placement.physicalToLogical[i]),
            physical: String(i - l * P),
          },
          delta,
        );
        reported[i] = served[i] as number;
      }
    },
  });
  return {
    rows: new Counter({
      name: "expertmesh_worker_rows_total",
      help: "Hidden rows computed by this worker, by model layer",
      labelNames: ["layer"] as const,
      registers: [registry],
    }),
    requests: new Counter({
      name: "expertmesh_worker_requests_total",
      help: "Dispatch requests answered, by model layer and status code (OK or the in-band error)",
      labelNames: ["layer", "code"] as const,
      registers: [registry],
    }),
    latency: new Histogram({
      name: "expertmesh_worker_dispatch_seconds",
      help: "Time from receiving a dispatch request to having its sums",
      labelNames: ["layer"] as const,
      buckets: exponentialBuckets(0.0001, 2, 16),
      registers: [registry],
    }),
    inFlight: new Gauge({
      name: "expertmesh_worker_inflight_requests",
      help: "Dispatch requests being computed",
      registers: [registry],
    }),
    streams: new Gauge({
      name: "expertmesh_worker_dispatch_streams",
      help: "Open Dispatch streams (one per attention node)",
      registers: [registry],
    }),
    loadFlushes: new Counter({
      name: "expertmesh_worker_load_flushes_total",
      help: "Load-window flushes to Redis, by outcome",
      labelNames: ["outcome"] as const,
      registers: [registry],
    }),
  };
}

/** The status code's name as a metric label ("OK", "INVALID_ARGUMENT", …). */
export function codeLabel(code: Code): string {
  return Code[code] ?? String(code);
}
