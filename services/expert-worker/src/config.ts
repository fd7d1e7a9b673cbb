/**
 * Every setting of the expert-worker, read from EXPERTMESH_* variables once at startup
 * (`loadWorkerConfig`). Nothing else in the service reads the environment.
 */
import {
  LOG_LEVELS,
  defineConfig,
  durationOption,
  enumOption,
  intOption,
  loadConfig,
  stringOption,
} from "@expertmesh/shared";
import type { ConfigOverrides, ConfigValues, Env } from "@expertmesh/shared";

export const workerConfig = defineConfig({
  modelDir: stringOption({
    env: "EXPERTMESH_MODEL_DIR",
    doc: "checkpoint directory (config.json + safetensors); only this worker's experts are read",
  }),
  workerId: stringOption({
    env: "EXPERTMESH_WORKER_ID",
    doc: "this worker's id in the placement (StatefulSet pod name, or the launcher's name)",
  }),
  node: stringOption({
    env: "EXPERTMESH_NODE",
    optional: true,
    doc: "routing node (failure domain) this worker runs on; must match the placement's node for this worker (default: the placement's)",
  }),
  host: stringOption({ env: "EXPERTMESH_HOST", default: "0.0.0.0", doc: "address the gRPC server binds" }),
  port: intOption({
    env: "EXPERTMESH_PORT",
    default: 50061,
    min: 0,
    max: 65535,
    doc: "gRPC port (ExpertService, health, reflection); 0 picks a free one",
  }),
  metricsPort: intOption({
    env: "EXPERTMESH_METRICS_PORT",
    default: 9461,
    min: 0,
    max: 65535,
    doc: "HTTP port of /metrics, /healthz, /readyz; 0 picks a free one",
  }),
  redisUrl: stringOption({
    env: "EXPERTMESH_REDIS_URL",
    optional: true,
    secret: true,
    doc: "Redis (placement versions, load windows); without it the placement comes from EXPERTMESH_PLACEMENT_FILE and load is not flushed",
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
  loadWindow: durationOption({
    env: "EXPERTMESH_LOAD_WINDOW",
    default: "10s",
    min: "100ms",
    doc: "load-accounting window: counts are flushed to Redis once per window",
  }),
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
    doc: "how long in-flight requests may take to finish on SIGTERM",
  }),
  logLevel: enumOption({
    env: "EXPERTMESH_LOG_LEVEL",
    values: LOG_LEVELS,
    default: "info",
    doc: "log level",
  }),
});

export type WorkerConfig = ConfigValues<typeof workerConfig>;

/** The validated configuration; one INVALID_ARGUMENT error listing every problem otherwise. */
export function loadWorkerConfig(
  env?: Env,
  overrides: ConfigOverrides<typeof workerConfig> = {},
): WorkerConfig {
  return loadConfig(workerConfig, env, overrides);
}
