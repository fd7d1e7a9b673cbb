/**
 * Batch jobs through a real router (tiny-v3, token-id prompts): the router process, started with
 * EXPERTMESH_REDIS_URL, serves /v1/batch_jobs and the gRPC BatchService, and its own batch
 * worker runs the jobs on the attention node. A batch of the fixture's prompts reproduces the
 * golden greedy tokens over both front doors; a large batch cancelled while running ends
 * cancelled, gives the KV blocks back, and did not keep an interactive request out meanwhile.
 * Last, SIGTERM while a job runs: the router drains and exits, the job goes back to the queue.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { BatchService, BatchStatus, FinishReason } from "@expertmesh/proto";
import { Code, ExpertMeshError, createGrpcChannel, createGrpcClient } from "@expertmesh/shared";
import type { GrpcChannel, GrpcClient } from "@expertmesh/shared";
import { startRedisServer, waitUntil } from "@expertmesh/shared/testing";
import type { RedisServer } from "@expertmesh/shared/testing";
import { BatchKeys, BatchStore } from "../src/batch/index.ts";
import { TINY_V3, startRouterCluster } from "./router-cluster.ts";
import type { RouterCluster } from "./router-cluster.ts";

interface GoldenPrompt {
  name: string;
  tokens: number[];
  greedy: { generated: number[] };
}

/** The proto3 JSON of a BatchJob (defaults are left out). */
interface BatchJobJson {
  batch_id: string;
  status: string;
  total?: number;
  completed?: number;
  failed?: number;
}

interface ResultsJson {
  batch: BatchJobJson;
  results?: { index?: number; request_id: string; token_ids?: number[]; finish_reason?: string }[];
  next_offset?: number;
}

const CLUSTER = "router-batch";

describe("router batch jobs on tiny-v3 (token ids)", { timeout: 60_000 }, () => {
  let redis: RedisServer;
  let cluster: RouterCluster;
  let channel: GrpcChannel;
  let batches: GrpcClient<typeof BatchService>;
  let golden: GoldenPrompt[];

  before(async () => {
    golden = (JSON.parse(await readFile(`${TINY_V3}/golden.json`, "utf8")) as { prompts: GoldenPrompt[] })
      .prompts;
    assert.equal(golden.length, 3);
    redis = await startRedisServer();
    cluster = await startRouterCluster({
      modelDir: TINY_V3,
      // float32 on the wire: the distributed forward matches the golden (invariant 1).
      attentionEnv: {
        EXPERTMESH_WIRE_DTYPE: "float32",
        EXPERTMESH_COMBINE_DTYPE: "float32",
        EXPERTMESH_MAX_RUNNING: "3",
      },
      routerEnv: {
        EXPERTMESH_REDIS_URL: redis.url,
        EXPERTMESH_CLUSTER: CLUSTER,
        // Batch work holds at most 2 of the node's 3 slots: one is always left for interactive.
        EXPERTMESH_BATCH_MAX_IN_FLIGHT: "2",
        EXPERTMESH_BATCH_RETRY_BACKOFF: "50ms",
      },
    });
    channel = createGrpcChannel(cluster.grpcAddress);
    batches = createGrpcClient(BatchService, channel);
  });
  after(async () => {
    channel?.close();
    await cluster?.stop();
    await redis?.stop();
  });

  async function http<T>(method: string, path: string, body?: unknown): Promise<{ status: number; json: T }> {
    const response = await fetch(`${cluster.httpUrl}${path}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, json: (await response.json()) as T };
  }

  async function getJob(batchId: string): Promise<BatchJobJson> {
    const { status, json } = await http<{ batch: BatchJobJson }>("GET", `/v1/batch_jobs/${batchId}`);
    assert.equal(status, 200);
    return json.batch;
  }

  /** Waits until the attention node holds no sequence and every KV block is free again. */
  async function nodeIdle(): Promise<void> {
    await waitUntil(
      async () => {
        const load = await cluster.attention.getLoad({});
        return load.running === 0 && load.waiting === 0 && load.freeKvBlocks === load.totalKvBlocks;
      },
      { what: "attention node idle with every KV block free", timeoutMs: 15_000 },
    );
  }

  it("HTTP: POST /v1/batch_jobs, poll GET until completed, results are the golden greedy tokens", async () => {
    const submit = await http<{ batch: BatchJobJson }>("POST", "/v1/batch_jobs", {
      batch_id: "golden-http",
      requests: golden.map((g) => ({
        request_id: g.name,
        token_ids: { ids: g.tokens },
        sampling: { temperature: 0, max_tokens: 8 },
      })),
      labels: { via: "http" },
    });
    assert.equal(submit.status, 200, JSON.stringify(submit.json));
    assert.equal(submit.json.batch.batch_id, "golden-http");
    assert.equal(submit.json.batch.total, 3);

    const done = await waitUntil(
      async () => {
        const job = await getJob("golden-http");
        return job.status === "BATCH_STATUS_COMPLETED" ? job : undefined;
      },
      { what: "batch golden-http completed", timeoutMs: 20_000, intervalMs: 50 },
    );
    assert.deepEqual([done.completed, done.failed ?? 0], [3, 0]);

    const page = await http<ResultsJson>("GET", "/v1/batch_jobs/golden-http/results?offset=0&limit=10");
    assert.equal(page.status, 200);
    const results = page.json.results ?? [];
    assert.deepEqual(
      results.map((r) => [r.index ?? 0, r.request_id, r.token_ids, r.finish_reason]),
      golden.map((g, i) => [i, g.name, g.greedy.generated, "FINISH_REASON_LENGTH"]),
    );
    assert.equal(page.json.next_offset ?? 0, 0, "one page holds them all");
    // Paging: offset 1, limit 1 is the second prompt only, and points at the third.
    const second = await http<ResultsJson>("GET", "/v1/batch_jobs/golden-http/results?offset=1&limit=1");
    assert.deepEqual(
      (second.json.results ?? []).map((r) => r.token_ids),
      [golden[1]!.greedy.generated],
    );
    assert.equal(second.json.next_offset, 2);

    const missing = await http<{ error: { message: string } }>("GET", "/v1/batch_jobs/batch_missing");
    assert.equal(missing.status, 404, missing.json.error.message);
    const bad = await http<{ error: { message: string } }>("POST", "/v1/batch_jobs", { requests: [] });
    assert.equal(bad.status, 400, bad.json.error.message);
  });

  it("gRPC BatchService: submit, watch until the stream ends, read the results", async () => {
    const submitted = await batches.submitBatch({
      batchId: "golden-grpc",
      requests: golden.map((g) => ({
        prompt: { case: "tokenIds" as const, value: { ids: g.tokens } },
        sampling: { temperature: 0, maxTokens: 8 },
      })),
    });
    assert.equal(submitted.batch?.total, 3);
    let last: BatchStatus | undefined;
    for await (const update of batches.watchBatch({ batchId: "golden-grpc" }, { timeoutMs: 20_000 }))
      last = update.batch?.status;
    assert.equal(last, BatchStatus.COMPLETED);
    const page = await batches.getBatchResults({ batchId: "golden-grpc" });
    assert.deepEqual(
      page.results.map((r) => [r.index, r.tokenIds, r.finishReason]),
      golden.map((g, i) => [i, g.greedy.generated, FinishReason.LENGTH]),
    );
    assert.deepEqual(
      [page.batch?.usage?.promptTokens, page.batch?.usage?.completionTokens],
      [golden.reduce((n, g) => n + g.tokens.length, 0), 24],
    );
    await assert.rejects(
      batches.getBatch({ batchId: "batch_missing" }),
      (e: unknown) => e instanceof ExpertMeshError && e.code === Code.NOT_FOUND,
    );
  });

  it("a large batch cancelled while running ends cancelled; interactive requests get through meanwhile", async () => {
    const g = golden[0]!;
    const total = 60;
    const submit = await http<{ batch: BatchJobJson }>("POST", "/v1/batch_jobs", {
      batch_id: "large",
      requests: Array.from({ length: total }, () => ({
        token_ids: { ids: g.tokens },
        sampling: { temperature: 0, max_tokens: 200, ignore_eos: true },
      })),
    });
    assert.equal(submit.status, 200, JSON.stringify(submit.json));
    await waitUntil(async () => (await getJob("large")).status === "BATCH_STATUS_RUNNING", {
      what: "batch large running",
      timeoutMs: 10_000,
    });

    // Batch work holds at most 2 of the 3 slots: an interactive completion is served now.
    const interactive = await http<{ choices: { token_ids: number[]; finish_reason: string }[] }>(
      "POST",
      "/v1/completions",
      { model: "tiny-v3", prompt: g.tokens, max_tokens: 8, temperature: 0, return_token_ids: true },
    );
    assert.equal(interactive.status, 200);
    assert.deepEqual(interactive.json.choices[0]?.token_ids, g.greedy.generated);
    assert.notEqual((await getJob("large")).status, "BATCH_STATUS_COMPLETED", "still running");

    const cancel = await http<{ batch: BatchJobJson }>("POST", "/v1/batch_jobs/large/cancel");
    assert.equal(cancel.status, 200);
    assert.ok(
      ["BATCH_STATUS_CANCELLING", "BATCH_STATUS_CANCELLED"].includes(cancel.json.batch.status),
      cancel.json.batch.status,
    );
    const final = await waitUntil(
      async () => {
        const job = await getJob("large");
        return job.status === "BATCH_STATUS_CANCELLED" ? job : undefined;
      },
      { what: "batch large cancelled", timeoutMs: 15_000, intervalMs: 50 },
    );
    assert.ok((final.completed ?? 0) < total, `completed ${final.completed} of ${total}`);
    // The aborted generations gave their sequences and KV blocks back.
    await nodeIdle();
    // Cancelling a finished job again is no error and changes nothing (DELETE form).
    const again = await http<{ batch: BatchJobJson }>("DELETE", "/v1/batch_jobs/large");
    assert.equal(again.status, 200);
    assert.equal(again.json.batch.status, "BATCH_STATUS_CANCELLED");
  });

  // Last: it stops the router.
  it("SIGTERM while a job runs: the router drains, exits 0, and the job is back in the queue", async () => {
    const g = golden[1]!;
    const total = 10;
    const submit = await http<{ batch: BatchJobJson }>("POST", "/v1/batch_jobs", {
      batch_id: "drained",
      requests: Array.from({ length: total }, () => ({
        token_ids: { ids: g.tokens },
        // Long generations: the drain must stop them, not wait for them.
        sampling: { temperature: 0, max_tokens: 1_000, ignore_eos: true },
      })),
    });
    assert.equal(submit.status, 200, JSON.stringify(submit.json));
    await waitUntil(async () => (await cluster.attention.getLoad({})).running > 0, {
      what: "batch generations running on the attention node",
      timeoutMs: 10_000,
    });
    cluster.router.kill("SIGTERM");
    assert.deepEqual(await cluster.router.exited, { code: 0, signal: null }, cluster.router.output());

    const keys = new BatchKeys({ cluster: CLUSTER });
    const client = new Redis(redis.url, { maxRetriesPerRequest: 3 });
    const queue = new Queue(keys.queueName, {
      connection: { url: redis.url, maxRetriesPerRequest: null },
      prefix: keys.bullPrefix,
    });
    try {
      const job = await new BatchStore(client, keys, { retentionMs: 60_000 }).get("drained");
      // Not failed, not finished: its unfinished prompts wait for the next router.
      assert.equal(job.status, "running");
      // The generations in flight were stopped (no result, no attempt used), not run to the end.
      assert.deepEqual([job.completed, job.failed], [0, 0]);
      assert.equal(await queue.getJobState("drained"), "waiting");
    } finally {
      await queue.close();
      await client.quit();
    }
    // The stopped generations gave their sequences and KV blocks back.
    await nodeIdle();
  });
});
