import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { batchOptionsFromConfig, compileBatchOptions } from "./batch/batch-options.ts";
import { loadRouterConfig, parseAttentionAddresses } from "./config.ts";

const ENV = {
  EXPERTMESH_MODEL_DIR: "/models/x",
  EXPERTMESH_ATTENTION_ADDRESSES: "a0=127.0.0.1:5001, a1=10.0.0.2:5001",
};

describe("router config", () => {
  it("loads with defaults and parses the attention topology", () => {
    const config = loadRouterConfig(ENV);
    assert.equal(config.httpPort, 8000);
    assert.equal(config.maxQueuedRequests, 256);
    assert.equal(config.loadPollInterval, 1000);
    assert.equal(config.apiKey, undefined);
    assert.deepEqual(
      [...parseAttentionAddresses(config.attentionAddresses)],
      [
        ["a0", "127.0.0.1:5001"],
        ["a1", "10.0.0.2:5001"],
      ],
    );
  });

  it("rejects a malformed or repeated attention address, and unknown variables", () => {
    const invalid = (e: unknown) => e instanceof ExpertMeshError && e.code === Code.INVALID_ARGUMENT;
    assert.throws(
      () => loadRouterConfig({ ...ENV, EXPERTMESH_ATTENTION_ADDRESSES: "127.0.0.1:5001" }),
      invalid,
    );
    assert.throws(
      () => loadRouterConfig({ ...ENV, EXPERTMESH_ATTENTION_ADDRESSES: "a0=h:1,a0=h:2" }),
      invalid,
    );
    assert.throws(
      () => loadRouterConfig({ ...ENV, EXPERTMESH_HTTP_PROT: "1" }),
      /EXPERTMESH_HTTP_PROT: unknown variable/,
    );
    assert.throws(
      () => loadRouterConfig({ EXPERTMESH_MODEL_DIR: "/m" }),
      /EXPERTMESH_ATTENTION_ADDRESSES: required/,
    );
  });

  it("reads the batch jobs' EXPERTMESH_BATCH_* settings into valid batch options", () => {
    const defaults = compileBatchOptions(batchOptionsFromConfig(loadRouterConfig(ENV)));
    assert.equal(defaults.maxInFlight, 4);
    assert.equal(defaults.maxConcurrentJobs, 2);
    assert.equal(defaults.retentionMs, 7 * 24 * 3_600_000);
    const config = loadRouterConfig({
      ...ENV,
      EXPERTMESH_REDIS_URL: "redis://127.0.0.1:6379",
      EXPERTMESH_BATCH_MAX_IN_FLIGHT: "2",
      EXPERTMESH_BATCH_MAX_CONCURRENT_JOBS: "0",
      EXPERTMESH_BATCH_MAX_ITEMS: "10",
      EXPERTMESH_BATCH_MAX_ATTEMPTS: "5",
      EXPERTMESH_BATCH_RETRY_BACKOFF: "250ms",
      EXPERTMESH_BATCH_OVERLOAD_BACKOFF: "2s",
      EXPERTMESH_BATCH_MAX_BACKOFF: "1m",
      EXPERTMESH_BATCH_ITEM_TIMEOUT: "30s",
      EXPERTMESH_BATCH_RETENTION: "1h",
    });
    assert.equal(config.redisUrl, "redis://127.0.0.1:6379");
    const options = compileBatchOptions(batchOptionsFromConfig(config));
    assert.deepEqual(
      [
        options.maxInFlight,
        options.maxConcurrentJobs,
        options.maxItems,
        options.defaultMaxAttempts,
        options.retryBackoffMs,
        options.overloadBackoffMs,
        options.maxBackoffMs,
        options.itemTimeoutMs,
        options.retentionMs,
      ],
      [2, 0, 10, 5, 250, 2_000, 60_000, 30_000, 3_600_000],
    );
    assert.throws(
      () => loadRouterConfig({ ...ENV, EXPERTMESH_BATCH_MAX_IN_FLIGHT: "0" }),
      /EXPERTMESH_BATCH_MAX_IN_FLIGHT/,
    );
    assert.throws(
      () => loadRouterConfig({ ...ENV, EXPERTMESH_BATCH_MAX_ATTEMPTS: "11" }),
      /EXPERTMESH_BATCH_MAX_ATTEMPTS/,
    );
  });
});
