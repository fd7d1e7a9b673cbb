/**
 * Interactive requests are served while a large batch job runs: the batch never holds more than
 * maxInFlight of the cluster's slots, so an interactive request finds a free one at once. The
 * fake cluster gives slots first come first served with no priority at all, so what is tested
 * is the batch cap itself; the second case shows the same load without enough headroom
 * (maxInFlight = every slot) does make interactive requests wait.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { BatchStatus } from "@expertmesh/proto";
import { startRedisServer, waitUntil } from "@expertmesh/shared/testing";
import type { RedisServer } from "@expertmesh/shared/testing";
import { startBatchJobs } from "../src/batch/index.ts";
import type { BatchModule } from "../src/batch/index.ts";
import type { GenerationRequest } from "../src/core/generation.ts";
import { FakeGeneration } from "./batch-fake-generation.ts";
import { batchOf } from "./batch-requests.ts";

const SLOTS = 3;
const ITEMS = 40;

function interactive(i: number): GenerationRequest {
  return {
    requestId: `chat-${i}`,
    prompt: { text: "hi!" },
    sampling: {
      temperature: 0,
      topP: 1,
      topK: 0,
      maxTokens: 0,
      stop: [],
      stopTokenIds: [],
      ignoreEos: false,
    },
    logprobs: false,
    topLogprobs: 0,
    priority: "interactive",
  };
}

describe("batch priority", () => {
  let redis: RedisServer;
  const modules: BatchModule[] = [];

  /** Runs a large batch, and 6 interactive requests one after another while it runs. */
  async function interactiveDuringBatch(cluster: string, maxInFlight: number) {
    const generation = new FakeGeneration({ slots: SLOTS, tokenDelayMs: 8 });
    const batch = await startBatchJobs({
      redisUrl: redis.url,
      cluster,
      generation,
      options: { maxInFlight, cancelPollMs: 100 },
    });
    modules.push(batch);
    const { batchId = "" } = await batch.jobs.submit(batchOf(Array.from({ length: ITEMS }, () => "abcdef")));
    await waitUntil(() => generation.running >= maxInFlight, {
      what: "the batch to take its slots",
      intervalMs: 2,
    });
    for (let i = 0; i < 6; i++) {
      let text = "";
      for await (const chunk of generation.generate(interactive(i), AbortSignal.timeout(10_000)))
        text += chunk.text;
      assert.equal(text, "hi!");
    }
    const during = await batch.jobs.get(batchId);
    return { generation, batch, batchId, during };
  }

  before(async () => {
    redis = await startRedisServer();
  });
  after(async () => {
    for (const batch of modules) await batch.close();
    await redis.stop();
  });

  it("interactive requests find a free slot at once while a large batch runs under its cap", async () => {
    const { generation, batch, batchId, during } = await interactiveDuringBatch("prio-capped", 2);
    assert.equal(during.status, BatchStatus.RUNNING, "the batch was still running meanwhile");
    assert.ok((during.completed ?? 0) < ITEMS);
    const chats = generation.callsOf("interactive");
    assert.equal(chats.length, 6);
    assert.deepEqual(
      chats.map((c) => c.queued),
      [false, false, false, false, false, false],
      "no interactive request waited for a slot",
    );
    assert.ok(generation.maxBatchRunning <= 2, `batch ran ${generation.maxBatchRunning} generations at once`);
    assert.ok(batch.slots.inUse <= 2);
    await waitUntil(async () => (await batch.jobs.get(batchId)).status === BatchStatus.COMPLETED, {
      timeoutMs: 20_000,
      what: "batch done",
    });
    assert.equal((await batch.jobs.get(batchId)).completed, ITEMS);
    assert.equal(generation.maxBatchRunning, 2, "the batch used what it was allowed");
  });

  it("without headroom (the batch may take every slot) interactive requests wait: the cap is what protects them", async () => {
    const { generation, batch, batchId } = await interactiveDuringBatch("prio-uncapped", SLOTS);
    const chats = generation.callsOf("interactive");
    assert.ok(
      chats.some((c) => c.queued),
      "an interactive request had to wait behind batch work",
    );
    await batch.jobs.cancel(batchId);
  });
});
