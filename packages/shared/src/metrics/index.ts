export { createMetricsRegistry } from "./metrics-registry.ts";
export type { MetricsRegistryOptions } from "./metrics-registry.ts";
export { startMetricsServer } from "./metrics-server.ts";
export type { HealthProbe, MetricsServer, MetricsServerOptions } from "./metrics-server.ts";
// The metric classes, so services define metrics against their own registry without a
// prom-client dependency of their own (one version across the project).
export { Counter, Gauge, Histogram, Registry, Summary, exponentialBuckets, linearBuckets } from "prom-client";
