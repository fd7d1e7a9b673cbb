/**
 * One prom-client Registry per service, never prom-client's global default: two services in
 * one process (tests, the in-process cluster) must not share or collide on metrics.
 */
import { Registry, collectDefaultMetrics } from "prom-client";

export interface MetricsRegistryOptions {
  /** Prefix of the default process/Node.js metrics; "expertmesh_" by default. */
  prefix?: string;
  /** Collect process and Node.js runtime metrics (CPU, memory, event-loop lag, GC); true by default. */
  defaultMetrics?: boolean;
  /** Labels added to every metric of this registry. */
  defaultLabels?: Readonly<Record<string, string>>;
}

export function createMetricsRegistry(options: MetricsRegistryOptions = {}): Registry {
  const registry = new Registry();
  if (options.defaultLabels !== undefined) registry.setDefaultLabels({ ...options.defaultLabels });
  if (options.defaultMetrics ?? true) {
    collectDefaultMetrics({ register: registry, prefix: options.prefix ?? "expertmesh_" });
  }
  return registry;
}
