import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { BatchStatus, FinishReason } from "@expertmesh/proto";
import type { BatchItemResult } from "@expertmesh/proto";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { startRedisServer, waitUntil } from "@expertmesh/shared/testing";
import type { RedisServer } from "@expertmesh/shared/testing";
import { startBatchJobs } from "../src/batch/index.ts";
import type { BatchModule, BatchOptions } from "../src/batch/index.ts";
import { FakeGeneration } from "./batch-fake-generation.ts";
import { batchOf } from "./batch-requests.ts";

async function rejectsWith(
  promise: Promise<unknown>,
  code: Code,
  pattern?: RegExp,
): Promise<ExpertMeshError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof ExpertMeshError, `expected an ExpertMeshError, got ${String(caught)}`);
  assert.equal(Code[caught.code], Code[code], caught.message);
  if (pattern !== undefined) assert.match(caught.message, pattern);
  return caught;
}

/** Fast item retries, so tests stay quick. */
const FAST: BatchOptions = {
  retryBackoffMs: 5,
  overloadBackoffMs: 20,
  maxBackoffMs: 50,
  cancelPollMs: 100,
  watchPollMs: 200,
};

describe("batch jobs on BullMQ", () => {
  let redis: RedisServer;
  const modules: BatchModule[] = [];
  let clusterSeq = 0;

  const start = async (generation: FakeGeneration, options: BatchOptions = {}): Promise<BatchModule> => {
    const batch = await startBatchJobs({
      redisUrl: redis.url,
      // A cluster name per test: its own keys and its own queue.
      cluster: `t${++clusterSeq}`,
      generation,
      options: { ...FAST, ...options },
    });
    modules.push(batch);
    return batch;
  };
  const results = async (batch: BatchModule, batchId: string): Promise<BatchItemResult[]> =>
    (await batch.jobs.results(batchId, 0, 1000)).results as BatchItemResult[];
  const finished = (batch: BatchModule, batchId: string, timeoutMs = 10_000): Promise<unknown> =>
    waitUntil(
      async () => {
        const job = await batch.jobs.get(batchId);
        return (
          job.status === BatchStatus.COMPLETED ||
          job.status === BatchStatus.CANCELLED ||
          job.status === BatchStatus.FAILED
        );
      },
      { timeoutMs, what: `batch ${batchId} to finish` },
    );

  before(async () => {
    redis = await startRedisServer();
  });
  after(async () => {
    for (const batch of modules) await batch.close();
    await redis.stop();
  });

  it("runs every prompt of one job at priority batch and reports results, progress and usage", async () => {
    const generation = new FakeGeneration({ slots: 4, tokenDelayMs: 1 });
    const batch = await start(generation, { maxInFlight: 2 });
    const submitted = await batch.jobs.submit(
      batchOf(
        [
          "hello",
          {
            prompt: { case: "tokenIds", value: { ids: [65, 66, 67] } },
            sampling: { maxTokens: 2 },
            logprobs: true,
          },
          "xyz",
        ],
        {
          labels: { team: "eval" },
        },
      ),
    );
    assert.equal(submitted.status, BatchStatus.QUEUED);
    assert.equal(submitted.total, 3);
    assert.match(submitted.batchId ?? "", /^batch_[0-9a-f]{32}$/);
    const batchId = submitted.batchId ?? "";

    await finished(batch, batchId);
    const job = await batch.jobs.get(batchId);
    assert.equal(job.status, BatchStatus.COMPLETED);
    assert.deepEqual([job.completed, job.failed], [3, 0]);
    assert.deepEqual(job.usage, { promptTokens: 5 + 3 + 3, completionTokens: 5 + 2 + 3 });
    assert.deepEqual(job.labels, { team: "eval" });
    assert.ok(
      (job.startedUnixMs ?? 0n) >= (job.createdUnixMs ?? 0n) &&
        (job.finishedUnixMs ?? 0n) >= (job.startedUnixMs ?? 0n),
    );

    const items = await results(batch, batchId);
    assert.deepEqual(
      items.map((r) => [
        r.index,
        r.requestId,
        r.text,
        r.tokenIds,
        r.finishReason,
        r.usage?.completionTokens,
        r.attempts,
      ]),
      [
        [0, `${batchId}-0`, "hello", [104, 101, 108, 108, 111], FinishReason.STOP, 5, 1],
        [1, `${batchId}-1`, "AB", [65, 66], FinishReason.LENGTH, 2, 1],
        [2, `${batchId}-2`, "xyz", [120, 121, 122], FinishReason.STOP, 3, 1],
      ],
    );
    assert.equal(items[1]?.logprobs.length, 2);
    assert.ok(generation.calls.every((c) => c.request.priority === "batch"));
  });

  it("pages through results and reports the next offset", async () => {
    const batch = await start(new FakeGeneration({ slots: 4, tokenDelayMs: 0 }), { maxInFlight: 4 });
    const { batchId = "" } = await batch.jobs.submit(batchOf(Array.from({ length: 7 }, (_, i) => `p${i}`)));
    await finished(batch, batchId);
    const first = await batch.jobs.results(batchId, 0, 3);
    assert.deepEqual(
      first.results.map((r) => r.index),
      [0, 1, 2],
    );
    assert.equal(first.nextOffset, 3);
    const last = await batch.jobs.results(batchId, 6, 3);
    assert.deepEqual(
      last.results.map((r) => r.text),
      ["p6"],
    );
    assert.equal(last.nextOffset, 0);
    await rejectsWith(batch.jobs.results(batchId, 0, 1001), Code.INVALID_ARGUMENT);
  });

  it("watch reports progress (completed/total) as it grows, then the final state", async () => {
    const batch = await start(new FakeGeneration({ slots: 4, tokenDelayMs: 15 }), { maxInFlight: 1 });
    const { batchId = "" } = await batch.jobs.submit(batchOf(["aaa", "bbb", "ccc", "ddd"]));
    const seen: [BatchStatus | undefined, number | undefined][] = [];
    for await (const job of batch.jobs.watch(batchId, AbortSignal.timeout(10_000)))
      seen.push([job.status, job.completed]);
    const last = seen.at(-1);
    assert.deepEqual(last, [BatchStatus.COMPLETED, 4]);
    const counts = seen.map(([, completed]) => completed ?? 0);
    assert.deepEqual(
      counts,
      [...counts].sort((a, b) => a - b),
      "progress never goes back",
    );
    assert.ok(new Set(counts).size >= 3, `saw progress ${JSON.stringify(seen)}`);
  });

  it("retries a transiently failing prompt with backoff; fails for good after max attempts; never retries bad input", async () => {
    const generation = new FakeGeneration({ slots: 4, tokenDelayMs: 0 });
    const batch = await start(generation, { maxInFlight: 3 });
    const { batchId = "" } = await batch.jobs.submit(
      batchOf(["flaky2:ok", "busy1:fine", "flaky9:never", "bad:input"], { maxAttempts: 3 }),
    );
    await finished(batch, batchId);
    const job = await batch.jobs.get(batchId);
    assert.deepEqual(
      [job.status, job.completed, job.failed, job.maxAttempts],
      [BatchStatus.COMPLETED, 2, 2, 3],
    );
    const [flaky, busy, never, bad] = await results(batch, batchId);
    assert.deepEqual([flaky?.text, flaky?.attempts, flaky?.finishReason], ["ok", 3, FinishReason.STOP]);
    assert.deepEqual([busy?.text, busy?.attempts], ["fine", 2]);
    assert.deepEqual(
      [never?.finishReason, never?.error?.code, never?.attempts],
      [FinishReason.ERROR, Code.UNAVAILABLE, 3],
    );
    assert.deepEqual(
      [bad?.error?.code, bad?.error?.message, bad?.attempts],
      [Code.INVALID_ARGUMENT, "prompt: refused by the fake", 1],
    );
    const attemptsOf = (index: number): number =>
      generation.calls.filter((c) => c.request.requestId === `${batchId}-${index}`).length;
    assert.deepEqual([0, 1, 2, 3].map(attemptsOf), [3, 2, 3, 1]);
    // The wait after RESOURCE_EXHAUSTED is the longer one (20 ms ± 20%).
    const busyCalls = generation.calls.filter((c) => c.request.requestId === `${batchId}-1`);
    assert.ok((busyCalls[1]?.calledAt ?? 0) - (busyCalls[0]?.calledAt ?? 0) >= 15);
  });

  it("cancelling a running job aborts its in-flight generations and issues no more prompts", async () => {
    const generation = new FakeGeneration({ slots: 8, tokenDelayMs: 20 });
    const batch = await start(generation, { maxInFlight: 2 });
    const { batchId = "" } = await batch.jobs.submit(batchOf(Array.from({ length: 30 }, () => "abcdefgh")));
    await waitUntil(async () => ((await batch.jobs.get(batchId)).completed ?? 0) >= 2, {
      timeoutMs: 10_000,
      what: "two items done",
    });
    const cancelling = await batch.jobs.cancel(batchId);
    assert.ok(cancelling.status === BatchStatus.CANCELLING || cancelling.status === BatchStatus.CANCELLED);
    await finished(batch, batchId);
    const job = await batch.jobs.get(batchId);
    assert.equal(job.status, BatchStatus.CANCELLED);
    assert.ok((job.finishedUnixMs ?? 0n) > 0n);
    assert.ok((job.completed ?? 0) < 30, "the job stopped early");
    // The generations in flight at the cancel were aborted, not run to the end.
    assert.ok(
      generation.calls.some((c) => c.outcome === "cancelled"),
      "an in-flight generation was aborted",
    );
    assert.equal(generation.running, 0);
    const issued = generation.calls.length;
    assert.ok(issued < 30);
    // Results exist only for the items that finished; nothing runs after the cancel.
    assert.equal((await results(batch, batchId)).length, job.completed);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(generation.calls.length, issued, "no prompt was issued after the job was cancelled");
    // Cancelling again changes nothing.
    assert.equal((await batch.jobs.cancel(batchId)).status, BatchStatus.CANCELLED);
  });

  it("a job cancelled while queued never runs", async () => {
    const generation = new FakeGeneration({ slots: 8, tokenDelayMs: 10 });
    const batch = await start(generation, { maxInFlight: 1, maxConcurrentJobs: 1 });
    const { batchId: first = "" } = await batch.jobs.submit(batchOf(["abcdefghij", "abcdefghij"]));
    const { batchId: second = "" } = await batch.jobs.submit(batchOf(["zz", "zz"]));
    await waitUntil(async () => (await batch.jobs.get(first)).status === BatchStatus.RUNNING, {
      what: "first job running",
    });
    const cancelled = await batch.jobs.cancel(second);
    assert.equal(cancelled.status, BatchStatus.CANCELLED);
    await finished(batch, first);
    assert.equal((await batch.jobs.get(first)).status, BatchStatus.COMPLETED);
    assert.equal(generation.calls.filter((c) => c.request.requestId.startsWith(second)).length, 0);
    assert.equal((await batch.jobs.get(second)).startedUnixMs, 0n);
  });

  it("a job stopped by a router shutting down goes back to the queue and another router finishes it, each item once", async () => {
    const slow = new FakeGeneration({ slots: 8, tokenDelayMs: 25 });
    const cluster = `resume${++clusterSeq}`;
    const first = await startBatchJobs({
      redisUrl: redis.url,
      cluster,
      generation: slow,
      options: { ...FAST, maxInFlight: 2 },
    });
    modules.push(first);
    const { batchId = "" } = await first.jobs.submit(
      batchOf(Array.from({ length: 12 }, (_, i) => `item-${i}`)),
    );
    await waitUntil(async () => ((await first.jobs.get(batchId)).completed ?? 0) >= 3, {
      timeoutMs: 10_000,
      what: "three items done",
    });
    await first.stopWorker();
    const afterStop = await first.jobs.get(batchId);
    assert.equal(afterStop.status, BatchStatus.RUNNING, "an interrupted job stays running, not failed");
    assert.ok((afterStop.completed ?? 0) < 12);

    const fast = new FakeGeneration({ slots: 8, tokenDelayMs: 0 });
    const second = await startBatchJobs({
      redisUrl: redis.url,
      cluster,
      generation: fast,
      options: { ...FAST, maxInFlight: 2 },
    });
    modules.push(second);
    await finished(second, batchId);
    const job = await second.jobs.get(batchId);
    assert.deepEqual([job.status, job.completed, job.failed], [BatchStatus.COMPLETED, 12, 0]);
    const items = await results(second, batchId);
    assert.deepEqual(
      items.map((r) => r.text),
      Array.from({ length: 12 }, (_, i) => `item-${i}`),
    );
    // The second router ran only what the first had not finished.
    const done = new Set(slow.calls.filter((c) => c.outcome === "finished").map((c) => c.request.requestId));
    assert.ok(fast.calls.every((c) => !done.has(c.request.requestId)));
    assert.equal(done.size + fast.calls.length, 12);
  });

  it("refuses malformed jobs whole, with the field that is wrong", async () => {
    const batch = await start(new FakeGeneration({ slots: 1, tokenDelayMs: 0 }), {
      maxItems: 5,
      maxConcurrentJobs: 0,
    });
    await rejectsWith(batch.jobs.submit(batchOf([])), Code.INVALID_ARGUMENT, /requests/);
    const noPrompt = await rejectsWith(
      batch.jobs.submit(batchOf(["ok", { sampling: { maxTokens: 3 } }])),
      Code.INVALID_ARGUMENT,
    );
    assert.equal(noPrompt.details.field, "requests[1].prompt");
    await rejectsWith(
      batch.jobs.submit(batchOf(["a", { prompt: { case: "text", value: "b" }, model: "gpt-x" }])),
      Code.NOT_FOUND,
      /requests\[1\]/,
    );
    await rejectsWith(
      batch.jobs.submit(batchOf(["a", "b", "c", "d", "e", "f"])),
      Code.INVALID_ARGUMENT,
      /at most 5/,
    );
    await rejectsWith(
      batch.jobs.submit(batchOf(["a"], { maxAttempts: 11 })),
      Code.INVALID_ARGUMENT,
      /max_attempts/,
    );
    await rejectsWith(
      batch.jobs.submit(batchOf(["a"], { batchId: "no spaces" })),
      Code.INVALID_ARGUMENT,
      /batch_id/,
    );
    await rejectsWith(
      batch.jobs.submit(batchOf(["a"], { batchId: "12345" })),
      Code.INVALID_ARGUMENT,
      /batch_id/,
    );
    await batch.jobs.submit(batchOf(["a"], { batchId: "mine-1" }));
    await rejectsWith(batch.jobs.submit(batchOf(["a"], { batchId: "mine-1" })), Code.ALREADY_EXISTS);
    await rejectsWith(batch.jobs.get("batch_unknown"), Code.NOT_FOUND);
    await rejectsWith(batch.jobs.cancel("batch_unknown"), Code.NOT_FOUND);
    // With no worker on this router the job waits in the queue.
    assert.equal((await batch.jobs.get("mine-1")).status, BatchStatus.QUEUED);
  });
});
