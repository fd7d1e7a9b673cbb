/**
 * Every setting of the expert-worker, read from EXPERTMESH_* variables once at startup
 * (`loadWorkerConfig`). Nothing else in the service reads the environment.
 */
import {
  defineConfig,
  durationOption,
  loadConfig,
  serviceEndpointOptions,
  serviceRuntimeOptions,
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
  ...serviceEndpointOptions({
    port: 50061,
    metricsPort: 9461,
    grpcService: "ExpertService",
    redisDoc:
      "Redis (placement versions, load windows); without it the placement comes from EXPERTMESH_PLACEMENT_FILE and load is not flushed",
  }),
  loadWindow: durationOption({
    env: "EXPERTMESH_LOAD_WINDOW",
    default: "10s",
    min: "100ms",
    doc: "load-accounting window: counts are flushed to Redis once per window",
  }),
  ...serviceRuntimeOptions({ drains: "in-flight requests" }),
});

export type WorkerConfig = ConfigValues<typeof workerConfig>;

/** The validated configuration; one INVALID_ARGUMENT error listing every problem otherwise. */
export function loadWorkerConfig(
  env?: Env,
  overrides: ConfigOverrides<typeof workerConfig> = {},
): WorkerConfig {
  return loadConfig(workerConfig, env, overrides);
}
