/**
 * Every setting of the attention node, read from EXPERTMESH_* variables once at startup
 * (`loadAttentionConfig`). Nothing else in the service reads the environment.
 */
import {
  parseAddressMap,
  defineConfig,
  durationOption,
  enumOption,
  intOption,
  listOption,
  loadConfig,
  serviceEndpointOptions,
  serviceRuntimeOptions,
  stringOption,
} from "@expertmesh/shared";
import type { ConfigOverrides, ConfigValues, Env } from "@expertmesh/shared";

export const attentionConfig = defineConfig({
  modelDir: stringOption({
    env: "EXPERTMESH_MODEL_DIR",
    doc: "checkpoint directory (config.json + safetensors); routed experts are never read here",
  }),
  attentionId: stringOption({
    env: "EXPERTMESH_ATTENTION_ID",
    default: "a0",
    doc: "this node's id (data-parallel rank name: StatefulSet pod name, or the launcher's a0, a1, …)",
  }),
  ...serviceEndpointOptions({
    port: 50051,
    metricsPort: 9451,
    grpcService: "AttentionService",
    redisDoc:
      "Redis holding the current placement; without it the placement comes from EXPERTMESH_PLACEMENT_FILE",
  }),
  workerAddresses: listOption({
    env: "EXPERTMESH_WORKER_ADDRESSES",
    doc: "static topology: every placement worker's gRPC address, e.g. w0=127.0.0.1:5001,w1=127.0.0.1:5002",
  }),
  wireDtype: enumOption({
    env: "EXPERTMESH_WIRE_DTYPE",
    values: ["bf16", "float32", "fp8"],
    default: "bf16",
    doc: "encoding of dispatched hidden rows (float32 is exact; fp8 = e4m3 with per-128 scales, needs hidden % 128 = 0)",
  }),
  combineDtype: enumOption({
    env: "EXPERTMESH_COMBINE_DTYPE",
    values: ["bf16", "float32"],
    default: "bf16",
    doc: "encoding of the weighted sums workers return",
  }),
  dispatchTimeout: durationOption({
    env: "EXPERTMESH_DISPATCH_TIMEOUT",
    default: "30s",
    min: "1ms",
    doc: "deadline of one layer's dispatch/combine; a step that misses it fails its requests with a retryable status",
  }),
  workerConnectTimeout: durationOption({
    env: "EXPERTMESH_WORKER_CONNECT_TIMEOUT",
    default: "60s",
    doc: "how long startup waits for every worker's channel to connect before failing",
  }),
  kvCacheMb: intOption({
    env: "EXPERTMESH_KV_CACHE_MB",
    default: 256,
    min: 1,
    doc: "memory budget of the paged latent KV cache, in MiB",
  }),
  kvBlockSize: intOption({
    env: "EXPERTMESH_KV_BLOCK_SIZE",
    default: 16,
    min: 1,
    max: 4096,
    doc: "tokens per KV cache block",
  }),
  maxBatchedTokens: intOption({
    env: "EXPERTMESH_MAX_BATCHED_TOKENS",
    default: 2048,
    min: 1,
    doc: "token budget of one engine step (prefill chunks + decodes)",
  }),
  maxRunning: intOption({
    env: "EXPERTMESH_MAX_RUNNING",
    default: 256,
    min: 1,
    doc: "most sequences the scheduler runs at once",
  }),
  defaultMaxTokens: intOption({
    env: "EXPERTMESH_DEFAULT_MAX_TOKENS",
    default: 256,
    min: 1,
    doc: "tokens generated when a sequence's max_tokens is 0 (the router normally resolves it)",
  }),
  ...serviceRuntimeOptions({ drains: "running sequences" }),
});

export type AttentionConfig = ConfigValues<typeof attentionConfig>;

/** The validated configuration; one INVALID_ARGUMENT error listing every problem otherwise. */
export function loadAttentionConfig(
  env?: Env,
  overrides: ConfigOverrides<typeof attentionConfig> = {},
): AttentionConfig {
  const config = loadConfig(attentionConfig, env, overrides);
  parseWorkerAddresses(config.workerAddresses);
  return config;
}

/** `["w0=host:port", …]` → workerId → "host:port"; INVALID_ARGUMENT on a malformed or repeated entry. */
export function parseWorkerAddresses(entries: readonly string[]): Map<string, string> {
  return parseAddressMap(entries, {
    variable: "EXPERTMESH_WORKER_ADDRESSES",
    idName: "workerId",
    member: "worker",
  });
}
