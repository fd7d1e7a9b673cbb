/**
 * The settings every gRPC service of the cluster (attention node, expert-worker) has, defined
 * once: where it listens, its Redis and placement, and how it runs and stops. A service's
 * registry spreads the two blocks in, in this order, around its own options:
 *
 *   defineConfig({ modelDir, …, ...serviceEndpointOptions({…}), own options, ...serviceRuntimeOptions({…}) })
 */
import { LOG_LEVELS } from "../logging.ts";
import { durationOption, enumOption, intOption, stringOption } from "./config-option.ts";

export interface ServiceEndpointInit {
  /** Default gRPC port. */
  port: number;
  /** Default port of the HTTP /metrics, /healthz, /readyz server. */
  metricsPort: number;
  /** The gRPC service the port serves, for the doc line ("ExpertService"). */
  grpcService: string;
  /** What this service keeps in Redis, for the doc line. */
  redisDoc: string;
}

/** host, port, metricsPort, redisUrl, cluster, placementFile. */
export function serviceEndpointOptions(init: ServiceEndpointInit) {
  return {
    host: stringOption({ env: "EXPERTMESH_HOST", default: "0.0.0.0", doc: "address the gRPC server binds" }),
    port: intOption({
      env: "EXPERTMESH_PORT",
      default: init.port,
      min: 0,
      max: 65535,
      doc: `gRPC port (${init.grpcService}, health, reflection); 0 picks a free one`,
    }),
    metricsPort: intOption({
      env: "EXPERTMESH_METRICS_PORT",
      default: init.metricsPort,
      min: 0,
      max: 65535,
      doc: "HTTP port of /metrics, /healthz, /readyz; 0 picks a free one",
    }),
    redisUrl: stringOption({
      env: "EXPERTMESH_REDIS_URL",
      optional: true,
      secret: true,
      doc: init.redisDoc,
    }),
    cluster: stringOption({
      env: "EXPERTMESH_CLUSTER",
      default: "default",
      doc: "cluster name in Redis keys (one model deployment)",
    }),
    placementFile: stringOption({
      env: "EXPERTMESH_PLACEMENT_FILE",
      optional: true,
      doc: "placement JSON (expertmesh.placement/v1); when unset, the current placement is read from Redis",
    }),
  };
}

export interface ServiceRuntimeInit {
  /** What must finish on SIGTERM before the service exits ("in-flight requests"). */
  drains: string;
}

/** threads, executionProvider, drainTimeout, logLevel. */
export function serviceRuntimeOptions(init: ServiceRuntimeInit) {
  return {
    threads: intOption({
      env: "EXPERTMESH_THREADS",
      default: 0,
      min: 0,
      max: 1024,
      doc: "onnxruntime intra-op threads (0: onnxruntime's choice)",
    }),
    executionProvider: enumOption({
      env: "EXPERTMESH_EXECUTION_PROVIDER",
      values: ["cpu", "cuda"],
      default: "cpu",
      doc: "onnxruntime execution provider",
    }),
    drainTimeout: durationOption({
      env: "EXPERTMESH_DRAIN_TIMEOUT",
      default: "30s",
      doc: `how long ${init.drains} may take to finish on SIGTERM`,
    }),
    logLevel: enumOption({
      env: "EXPERTMESH_LOG_LEVEL",
      values: LOG_LEVELS,
      default: "info",
      doc: "log level",
    }),
  };
}
