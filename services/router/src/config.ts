/**
 * Every setting of the router, read from EXPERTMESH_* variables once at startup
 * (`loadRouterConfig`), the batch jobs' EXPERTMESH_BATCH_* ones (batch/batch-options.ts)
 * included. Nothing else in the service reads the environment.
 */
import {
  parseAddressMap,
  LOG_LEVELS,
  defineConfig,
  durationOption,
  enumOption,
  intOption,
  listOption,
  loadConfig,
  stringOption,
} from "@expertmesh/shared";
import type { ConfigOverrides, ConfigValues, Env } from "@expertmesh/shared";
import { batchConfig } from "./batch/batch-options.ts";

export const routerConfig = defineConfig({
  modelDir: stringOption({
    env: "EXPERTMESH_MODEL_DIR",
    doc: "checkpoint directory: config.json (vocabulary, context length, EOS) and tokenizer.json if any; no weights are read",
  }),
  modelName: stringOption({
    env: "EXPERTMESH_MODEL_NAME",
    optional: true,
    doc: "served model name (OpenAI `model`, gRPC GenerateRequest.model); default: the model directory's base name",
  }),
  host: stringOption({
    env: "EXPERTMESH_HOST",
    default: "0.0.0.0",
    doc: "address the gRPC and HTTP servers bind",
  }),
  port: intOption({
    env: "EXPERTMESH_PORT",
    default: 50050,
    min: 0,
    max: 65535,
    doc: "gRPC port (InferenceService, health, reflection); 0 picks a free one",
  }),
  httpPort: intOption({
    env: "EXPERTMESH_HTTP_PORT",
    default: 8000,
    min: 0,
    max: 65535,
    doc: "HTTP port of the OpenAI-compatible API, /metrics, /health, /healthz, /readyz; 0 picks a free one",
  }),
  metricsPort: intOption({
    env: "EXPERTMESH_METRICS_PORT",
    optional: true,
    min: 0,
    max: 65535,
    doc: "extra HTTP port serving only /metrics, /healthz, /readyz (they are on the HTTP port either way)",
  }),
  attentionAddresses: listOption({
    env: "EXPERTMESH_ATTENTION_ADDRESSES",
    doc: "static topology: every attention node's id and gRPC address, e.g. a0=127.0.0.1:50051,a1=127.0.0.1:50052",
  }),
  maxQueuedRequests: intOption({
    env: "EXPERTMESH_MAX_QUEUED_REQUESTS",
    default: 256,
    min: 0,
    doc: "requests waiting for a free attention slot; beyond it new requests get RESOURCE_EXHAUSTED (HTTP 429)",
  }),
  maxModelLen: intOption({
    env: "EXPERTMESH_MAX_MODEL_LEN",
    optional: true,
    min: 1,
    doc: "longest prompt + completion in tokens; default and upper bound: config.json's max_position_embeddings",
  }),
  defaultMaxTokens: intOption({
    env: "EXPERTMESH_DEFAULT_MAX_TOKENS",
    default: 256,
    min: 1,
    doc: "tokens generated when a gRPC or chat request leaves max_tokens unset (capped by the context left)",
  }),
  apiKey: stringOption({
    env: "EXPERTMESH_API_KEY",
    optional: true,
    secret: true,
    doc: "when set, /v1/* requests need `Authorization: Bearer <key>`",
  }),
  redisUrl: stringOption({
    env: "EXPERTMESH_REDIS_URL",
    optional: true,
    secret: true,
    doc: "Redis holding the placement (GetClusterState's workers and placement) and the batch jobs (BatchService, /v1/batch_jobs); without it only attention load is reported and batch jobs are off",
  }),
  cluster: stringOption({
    env: "EXPERTMESH_CLUSTER",
    default: "default",
    doc: "cluster name in Redis keys (one model deployment)",
  }),
  loadPollInterval: durationOption({
    env: "EXPERTMESH_LOAD_POLL_INTERVAL",
    default: "1s",
    min: "10ms",
    doc: "how often each attention node's GetLoad is polled (admission input, and how fast a failed node is retried)",
  }),
  attentionConnectTimeout: durationOption({
    env: "EXPERTMESH_ATTENTION_CONNECT_TIMEOUT",
    default: "60s",
    doc: "how long startup waits for every attention node to answer GetLoad (after it, the router starts anyway and keeps retrying)",
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
  ...batchConfig,
});

export type RouterConfig = ConfigValues<typeof routerConfig>;

/** The validated configuration; one INVALID_ARGUMENT error listing every problem otherwise. */
export function loadRouterConfig(
  env?: Env,
  overrides: ConfigOverrides<typeof routerConfig> = {},
): RouterConfig {
  const config = loadConfig(routerConfig, env, overrides);
  parseAttentionAddresses(config.attentionAddresses);
  return config;
}

/** `["a0=host:port", …]` → node id → "host:port"; INVALID_ARGUMENT on a malformed or repeated entry. */
export function parseAttentionAddresses(entries: readonly string[]): Map<string, string> {
  return parseAddressMap(entries, {
    variable: "EXPERTMESH_ATTENTION_ADDRESSES",
    idName: "id",
    member: "node",
    emptyMessage: "at least one attention node (id=host:port) is needed",
  });
}
