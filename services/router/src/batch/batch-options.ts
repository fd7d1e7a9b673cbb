/**
 * Settings of the batch jobs. `batchConfig` is the registry of their EXPERTMESH_BATCH_*
 * variables (the router merges it into its own config); `compileBatchOptions` validates and
 * defaults options given in code (tests), so both paths end in one CompiledBatchOptions.
 *
 * The rule that keeps interactive traffic from being starved:
 *   1. A router runs at most `maxInFlight` batch generations at once, across all its batch jobs
 *      (BatchSlots). Batch work can therefore never hold more than routers × maxInFlight
 *      attention slots; keep that well under the cluster's total (Σ maxRunning of the attention
 *      nodes), e.g. a quarter, so interactive requests always find free slots.
 *   2. Batch generations go through admission with priority "batch": a waiting interactive
 *      request is always admitted before a waiting batch one, and batch waiters are at most
 *      maxInFlight per router in the admission queue, so they cannot fill it and cause 429s.
 *   3. Retries of batch items back off exponentially (longer after RESOURCE_EXHAUSTED), so an
 *      overloaded cluster sheds batch load first.
 */
import { defineConfig, durationOption, intOption, invalidArgument } from "@expertmesh/shared";
import type { ConfigValues } from "@expertmesh/shared";

export const batchConfig = defineConfig({
  batchMaxInFlight: intOption({
    env: "EXPERTMESH_BATCH_MAX_IN_FLIGHT",
    default: 4,
    min: 1,
    max: 4096,
    doc: "batch generations one router runs at once, over all its batch jobs (keep well under the cluster's attention slots)",
  }),
  batchMaxConcurrentJobs: intOption({
    env: "EXPERTMESH_BATCH_MAX_CONCURRENT_JOBS",
    default: 2,
    min: 0,
    max: 64,
    doc: "batch jobs one router works on at once (they share EXPERTMESH_BATCH_MAX_IN_FLIGHT); 0: this router runs none, it only accepts and reports them",
  }),
  batchMaxItems: intOption({
    env: "EXPERTMESH_BATCH_MAX_ITEMS",
    default: 50_000,
    min: 1,
    doc: "most prompts in one batch job",
  }),
  batchMaxAttempts: intOption({
    env: "EXPERTMESH_BATCH_MAX_ATTEMPTS",
    default: 3,
    min: 1,
    max: 10,
    doc: "attempts per prompt for retryable failures when the job does not say",
  }),
  batchRetryBackoff: durationOption({
    env: "EXPERTMESH_BATCH_RETRY_BACKOFF",
    default: "1s",
    doc: "first wait before retrying a prompt after UNAVAILABLE or ABORTED (doubles per attempt)",
  }),
  batchOverloadBackoff: durationOption({
    env: "EXPERTMESH_BATCH_OVERLOAD_BACKOFF",
    default: "5s",
    doc: "first wait before retrying a prompt after RESOURCE_EXHAUSTED (doubles per attempt)",
  }),
  batchMaxBackoff: durationOption({
    env: "EXPERTMESH_BATCH_MAX_BACKOFF",
    default: "60s",
    doc: "longest wait between two attempts of a prompt",
  }),
  batchItemTimeout: durationOption({
    env: "EXPERTMESH_BATCH_ITEM_TIMEOUT",
    default: "10m",
    min: "1ms",
    doc: "deadline of one attempt of one prompt",
  }),
  batchRetention: durationOption({
    env: "EXPERTMESH_BATCH_RETENTION",
    default: "168h",
    min: "1s",
    doc: "how long a finished batch job and its results stay readable",
  }),
});

export type BatchConfig = ConfigValues<typeof batchConfig>;

/** Batch settings in code (every field optional; see batchConfig for what each means). */
export interface BatchOptions {
  maxInFlight?: number;
  maxConcurrentJobs?: number;
  maxItems?: number;
  defaultMaxAttempts?: number;
  retryBackoffMs?: number;
  overloadBackoffMs?: number;
  maxBackoffMs?: number;
  itemTimeoutMs?: number;
  retentionMs?: number;
  /** How often a running job re-reads its status in case a cancel message was lost (1 s). */
  cancelPollMs?: number;
  /** How often WatchBatch re-reads a job in case a change message was lost (2 s). */
  watchPollMs?: number;
}

export type CompiledBatchOptions = Readonly<Required<BatchOptions>>;

const DEFAULTS: CompiledBatchOptions = {
  maxInFlight: 4,
  maxConcurrentJobs: 2,
  maxItems: 50_000,
  defaultMaxAttempts: 3,
  retryBackoffMs: 1_000,
  overloadBackoffMs: 5_000,
  maxBackoffMs: 60_000,
  itemTimeoutMs: 10 * 60_000,
  retentionMs: 7 * 24 * 3_600_000,
  cancelPollMs: 1_000,
  watchPollMs: 2_000,
};

/** The batch options of a loaded router config. */
export function batchOptionsFromConfig(config: BatchConfig): BatchOptions {
  return {
    maxInFlight: config.batchMaxInFlight,
    maxConcurrentJobs: config.batchMaxConcurrentJobs,
    maxItems: config.batchMaxItems,
    defaultMaxAttempts: config.batchMaxAttempts,
    retryBackoffMs: config.batchRetryBackoff,
    overloadBackoffMs: config.batchOverloadBackoff,
    maxBackoffMs: config.batchMaxBackoff,
    itemTimeoutMs: config.batchItemTimeout,
    retentionMs: config.batchRetention,
  };
}

/** Validates and defaults; INVALID_ARGUMENT naming the first bad field. */
export function compileBatchOptions(options: BatchOptions = {}): CompiledBatchOptions {
  const out: Record<string, number> = { ...DEFAULTS };
  for (const [key, value] of Object.entries(options) as [keyof BatchOptions, number | undefined][]) {
    if (value !== undefined) out[key] = value;
  }
  const compiled = out as unknown as CompiledBatchOptions;
  const positiveInts: (keyof BatchOptions)[] = ["maxInFlight", "maxItems", "defaultMaxAttempts"];
  for (const key of positiveInts) {
    if (!Number.isInteger(compiled[key]) || compiled[key] < 1) {
      throw invalidArgument(key, `must be a positive integer, got ${compiled[key]}`);
    }
  }
  if (!Number.isInteger(compiled.maxConcurrentJobs) || compiled.maxConcurrentJobs < 0) {
    throw invalidArgument(
      "maxConcurrentJobs",
      `must be a non-negative integer, got ${compiled.maxConcurrentJobs}`,
    );
  }
  if (compiled.defaultMaxAttempts > MAX_ATTEMPTS) {
    throw invalidArgument(
      "defaultMaxAttempts",
      `must be at most ${MAX_ATTEMPTS}, got ${compiled.defaultMaxAttempts}`,
    );
  }
  const durations: (keyof BatchOptions)[] = [
    "retryBackoffMs",
    "overloadBackoffMs",
    "maxBackoffMs",
    "itemTimeoutMs",
    "retentionMs",
    "cancelPollMs",
    "watchPollMs",
  ];
  for (const key of durations) {
    if (!Number.isFinite(compiled[key]) || compiled[key] < 0) {
      throw invalidArgument(key, `must be a non-negative number of milliseconds, got ${compiled[key]}`);
    }
  }
  for (const key of ["itemTimeoutMs", "retentionMs", "cancelPollMs", "watchPollMs"] as const) {
    if (compiled[key] === 0) throw invalidArgument(key, "must be positive");
  }
  return Object.freeze(compiled);
}

/** Upper bound of SubmitBatchRequest.max_attempts. */
export const MAX_ATTEMPTS = 10;
