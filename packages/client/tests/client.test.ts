import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import {
  Code,
  ExpertMeshError,
  backoffMs,
  compileRetryPolicy,
  createExpertMeshClient,
} from "@expertmesh/client";
import type {
  ExpertMeshClient,
  ExpertMeshClientOptions,
  GenerateChunk,
  GenerateRequest,
} from "@expertmesh/client";
import { waitUntil } from "@expertmesh/shared/testing";
import { startEchoRouter } from "./echo-router.ts";
import type { EchoRouter, GenerateCall } from "./echo-router.ts";

/** Asserts that `promise` rejects with an ExpertMeshError of `code` (and `message` when given). */
async function rejectsWith(
  promise: Promise<unknown>,
  code: Code,
  message?: string,
): Promise<ExpertMeshError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof ExpertMeshError, `expected an ExpertMeshError, got ${String(caught)}`);
  assert.equal(Code[caught.code], Code[code]);
  if (message !== undefined) assert.equal(caught.message, message);
  return caught;
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

// Fast retries so the tests stay quick; jitter 0 makes the waits exact.
const FAST_RETRY = {
  maxAttempts: 4,
  initialBackoffMs: 10,
  maxBackoffMs: 50,
  resourceExhaustedBackoffMs: 20,
  jitter: 0,
};

describe("ExpertMesh client", () => {
  let router: EchoRouter;
  const clients: ExpertMeshClient[] = [];
  const connect = (options: Partial<ExpertMeshClientOptions> = {}): ExpertMeshClient => {
    const client = createExpertMeshClient({ address: router.address, retry: FAST_RETRY, ...options });
    clients.push(client);
    return client;
  };

  before(async () => {
    router = await startEchoRouter();
  });
  /** The server's record of the call with `requestId` (a late call of an earlier test cannot be mistaken for it). */
  const callOf = (requestId: string): GenerateCall => {
    const call = router.calls.find((c) => c.request.requestId === requestId);
    assert.ok(call !== undefined, `the server saw no call ${requestId}`);
    return call;
  };

  beforeEach(() => {
    router.behavior = {};
    router.calls.length = 0;
  });
  after(async () => {
    for (const client of clients) client.close();
    await router.stop();
  });

  describe("generate", () => {
    it("streams typed chunks, then a final chunk with finish reason and usage", async () => {
      const chunks = await collect(connect().generate({ prompt: "hey", requestId: "r-1" }));
      assert.deepEqual(
        chunks.map((c) => [c.tokenIds, c.text, c.finishReason]),
        [
          [[104], "h", undefined],
          [[101], "e", undefined],
          [[121], "y", undefined],
          [[], "", "stop"],
        ],
      );
      assert.ok(chunks.every((c) => c.requestId === "r-1"));
      assert.deepEqual(chunks.at(-1)?.usage, { promptTokens: 3, completionTokens: 3 });
      assert.equal(chunks[0]?.usage, undefined);
    });

    it("sends token ids and sampling settings as the wire expects, and maps logprobs", async () => {
      const chunks = await collect(
        connect().generate({
          prompt: [7, 8, 9],
          maxTokens: 2,
          temperature: 0.5,
          seed: 42,
          stop: ["x"],
          topLogprobs: 2,
        }),
      );
      const request = router.calls[0]?.request;
      assert.deepEqual(request?.prompt, { case: "tokenIds", value: request?.prompt.value });
      assert.equal(request?.sampling?.maxTokens, 2);
      assert.equal(request?.sampling?.temperature, 0.5);
      assert.equal(request?.sampling?.seed, 42n);
      assert.deepEqual(request?.sampling?.stop, ["x"]);
      assert.equal(request?.topLogprobs, 2);
      assert.ok((request?.requestId ?? "").length > 0, "the client makes up a request id");
      assert.deepEqual(
        chunks.flatMap((c) => c.logprobs),
        [
          {
            tokenId: 7,
            logprob: -0.1,
            top: [
              { tokenId: 7, logprob: -0.1 },
              { tokenId: 8, logprob: -1.1 },
            ],
          },
          {
            tokenId: 8,
            logprob: -0.2,
            top: [
              { tokenId: 8, logprob: -0.2 },
              { tokenId: 9, logprob: -1.2 },
            ],
          },
        ].map((lp) => ({
          ...lp,
          logprob: Math.fround(lp.logprob),
          top: lp.top.map((t) => ({ ...t, logprob: Math.fround(t.logprob) })),
        })),
      );
      assert.equal(chunks.at(-1)?.finishReason, "length");
    });

    it("complete collects the whole generation", async () => {
      const completion = await connect().complete({ prompt: "hello", maxTokens: 4, requestId: "c-1" });
      assert.deepEqual(completion, {
        requestId: "c-1",
        tokenIds: [104, 101, 108, 108],
        text: "hell",
        logprobs: [],
        finishReason: "length",
        usage: { promptTokens: 5, completionTokens: 4 },
      });
    });
  });

  describe("INVALID_ARGUMENT", () => {
    it("surfaces the server's code, message and details and is not retried", async () => {
      router.behavior = {
        failBeforeFirstChunk: { code: Code.INVALID_ARGUMENT, message: "prompt: too long", times: 5 },
      };
      const error = await rejectsWith(
        connect().complete({ prompt: "x" }),
        Code.INVALID_ARGUMENT,
        "prompt: too long",
      );
      assert.equal(router.calls.length, 1);
      assert.equal(error.name, "ExpertMeshError");
    });

    it("a request the wire cannot carry fails in the client, before any call", () => {
      const client = connect();
      assert.throws(
        () => client.generate({ prompt: [1, -2] }),
        (e: unknown) =>
          e instanceof ExpertMeshError &&
          e.code === Code.INVALID_ARGUMENT &&
          e.details.field === "request.prompt",
      );
      assert.throws(() => client.generate({ prompt: "x", maxTokens: 1.5 }), ExpertMeshError);
      // A misspelt field is an error, not a silently ignored setting.
      assert.throws(
        () => client.generate({ prompt: "x", maxTokenz: 4 } as unknown as GenerateRequest),
        (e: unknown) => e instanceof ExpertMeshError && e.details.field === "request.maxTokenz",
      );
      assert.throws(
        () => createExpertMeshClient({ address: "h:1", retries: 3 } as unknown as ExpertMeshClientOptions),
        ExpertMeshError,
      );
      assert.throws(() => createExpertMeshClient({ address: "no-port" }), ExpertMeshError);
      assert.throws(
        () => createExpertMeshClient({ address: "h:1", retry: { maxAttempts: 0 } }),
        ExpertMeshError,
      );
      assert.equal(router.calls.length, 0);
    });
  });

  describe("UNAVAILABLE", () => {
    it("is retried with the same request id, then succeeds", async () => {
      router.behavior = {
        failBeforeFirstChunk: { code: Code.UNAVAILABLE, message: "no attention node", times: 2 },
      };
      const completion = await connect().complete({ prompt: "ok" });
      assert.equal(completion.text, "ok");
      assert.equal(router.calls.length, 3);
      assert.equal(new Set(router.calls.map((c) => c.request.requestId)).size, 1);
    });

    it("fails with UNAVAILABLE once maxAttempts are used up", async () => {
      router.behavior = {
        failBeforeFirstChunk: { code: Code.UNAVAILABLE, message: "no attention node", times: 100 },
      };
      await rejectsWith(
        connect({ retry: { ...FAST_RETRY, maxAttempts: 3 } }).complete({ prompt: "ok" }),
        Code.UNAVAILABLE,
        "no attention node",
      );
      assert.equal(router.calls.length, 3);
    });

    it("is not retried when retries are off", async () => {
      router.behavior = { failBeforeFirstChunk: { code: Code.UNAVAILABLE, message: "down", times: 1 } };
      await rejectsWith(connect({ retry: false }).complete({ prompt: "ok" }), Code.UNAVAILABLE);
      assert.equal(router.calls.length, 1);
    });

    it("a router that is not there is UNAVAILABLE after the retries", async () => {
      const client = createExpertMeshClient({
        address: "127.0.0.1:1",
        retry: { ...FAST_RETRY, maxAttempts: 2 },
      });
      clients.push(client);
      await rejectsWith(client.complete({ prompt: "x" }), Code.UNAVAILABLE);
    });

    it("INTERNAL is not retried", async () => {
      router.behavior = { failBeforeFirstChunk: { code: Code.INTERNAL, message: "boom", times: 5 } };
      await rejectsWith(connect().complete({ prompt: "ok" }), Code.INTERNAL, "internal error");
      assert.equal(router.calls.length, 1);
    });
  });

  describe("RESOURCE_EXHAUSTED", () => {
    it("is retried after the longer first wait", async () => {
      router.behavior = {
        failBeforeFirstChunk: { code: Code.RESOURCE_EXHAUSTED, message: "queue full", times: 1 },
      };
      const client = connect({
        retry: { ...FAST_RETRY, initialBackoffMs: 1, resourceExhaustedBackoffMs: 150 },
      });
      assert.equal((await client.complete({ prompt: "go" })).text, "go");
      assert.equal(router.calls.length, 2);
      const [first, second] = router.calls;
      // setTimeout never fires early; 2 ms of slack for the two clocks' rounding.
      assert.ok(
        (second?.receivedAt ?? 0) - (first?.receivedAt ?? 0) >= 148,
        "waited resourceExhaustedBackoffMs",
      );
    });

    it("backoff grows exponentially from a code-dependent base, capped, with bounded jitter", () => {
      const policy = compileRetryPolicy({
        initialBackoffMs: 100,
        resourceExhaustedBackoffMs: 1000,
        maxBackoffMs: 3000,
        multiplier: 2,
        jitter: 0.2,
      });
      const mid = (): number => 0.5;
      assert.deepEqual(
        [1, 2, 3, 4, 5, 6].map((n) => backoffMs(policy, n, Code.UNAVAILABLE, mid)),
        [100, 200, 400, 800, 1600, 3000],
      );
      assert.deepEqual(
        [1, 2, 3].map((n) => backoffMs(policy, n, Code.RESOURCE_EXHAUSTED, mid)),
        [1000, 2000, 3000],
      );
      assert.ok(Math.abs(backoffMs(policy, 1, Code.UNAVAILABLE, () => 0) - 80) < 1e-9);
      assert.ok(Math.abs(backoffMs(policy, 1, Code.UNAVAILABLE, () => 1) - 120) < 1e-9);
    });
  });

  describe("after the first chunk", () => {
    it("a failure is thrown to the consumer and never retried (the stream is not idempotent)", async () => {
      router.behavior = {
        failAfterChunks: { code: Code.UNAVAILABLE, message: "attention node lost", after: 2 },
      };
      const seen: GenerateChunk[] = [];
      await rejectsWith(
        (async () => {
          for await (const chunk of connect().generate({ prompt: "abcdef" })) seen.push(chunk);
        })(),
        Code.UNAVAILABLE,
        "attention node lost",
      );
      assert.deepEqual(
        seen.map((c) => c.text),
        ["a", "b"],
      );
      assert.equal(router.calls.length, 1);
    });
  });

  describe("deadline", () => {
    it("a slow stream fails with DEADLINE_EXCEEDED and the server's generation is stopped", async () => {
      router.behavior = { chunkDelayMs: 100 };
      const started = Date.now();
      const seen: string[] = [];
      await rejectsWith(
        (async () => {
          for await (const chunk of connect().generate(
            { prompt: "abcdefghij", requestId: "slow-1" },
            { timeoutMs: 250 },
          ))
            seen.push(chunk.text);
        })(),
        Code.DEADLINE_EXCEEDED,
      );
      assert.ok(Date.now() - started < 2_000);
      assert.ok(seen.length < 10, `got ${seen.length} chunks before the deadline`);
      const serverSaw = await callOf("slow-1").aborted;
      assert.ok(serverSaw === Code.DEADLINE_EXCEEDED || serverSaw === Code.CANCELLED);
      assert.equal(router.calls.length, 1);
    });

    it("defaultTimeoutMs applies when the call sets none", async () => {
      router.behavior = { chunkDelayMs: 100 };
      await rejectsWith(
        connect({ defaultTimeoutMs: 150 }).complete({ prompt: "abcdefghij" }),
        Code.DEADLINE_EXCEEDED,
      );
    });

    it("an absolute deadline in the past fails at once", async () => {
      await rejectsWith(
        connect().complete({ prompt: "x" }, { deadline: Date.now() - 1 }),
        Code.DEADLINE_EXCEEDED,
      );
    });

    it("no retry is started that could not finish before the deadline", async () => {
      router.behavior = { failBeforeFirstChunk: { code: Code.UNAVAILABLE, message: "down", times: 100 } };
      const client = connect({ retry: { ...FAST_RETRY, initialBackoffMs: 10_000, maxBackoffMs: 10_000 } });
      const started = Date.now();
      await rejectsWith(client.complete({ prompt: "x" }, { timeoutMs: 2_000 }), Code.UNAVAILABLE, "down");
      assert.ok(Date.now() - started < 5_000, "gave up without waiting for the 10 s backoff");
      assert.equal(router.calls.length, 1);
    });
  });

  describe("cancellation", () => {
    it("aborting mid-stream fails the stream with CANCELLED and the server sees the cancellation", async () => {
      router.behavior = { chunkDelayMs: 30 };
      const controller = new AbortController();
      const seen: string[] = [];
      await rejectsWith(
        (async () => {
          for await (const chunk of connect().generate(
            { prompt: "abcdefghij", requestId: "abort-1" },
            { signal: controller.signal },
          )) {
            seen.push(chunk.text);
            if (seen.length === 2) controller.abort();
          }
        })(),
        Code.CANCELLED,
      );
      assert.deepEqual(seen, ["a", "b"]);
      assert.equal(await callOf("abort-1").aborted, Code.CANCELLED);
    });

    it("breaking out of the loop cancels the call on the server", async () => {
      router.behavior = { chunkDelayMs: 30 };
      for await (const chunk of connect().generate({ prompt: "abcdefghij", requestId: "break-1" })) {
        assert.equal(chunk.text, "a");
        break;
      }
      assert.equal(await callOf("break-1").aborted, Code.CANCELLED);
      assert.ok(callOf("break-1").chunksSent < 10);
    });

    it("aborting during a retry's wait ends it with CANCELLED at once", async () => {
      router.behavior = { failBeforeFirstChunk: { code: Code.UNAVAILABLE, message: "down", times: 100 } };
      const client = connect({ retry: { ...FAST_RETRY, initialBackoffMs: 5_000, maxBackoffMs: 5_000 } });
      const controller = new AbortController();
      const outcome = rejectsWith(
        client.complete({ prompt: "x" }, { signal: controller.signal }),
        Code.CANCELLED,
      );
      // The first attempt has failed at the server: the client now waits 5 s before the next.
      await waitUntil(() => router.calls.length === 1, { what: "the first attempt" });
      const aborted = Date.now();
      controller.abort();
      await outcome;
      assert.ok(Date.now() - aborted < 1_000, "the wait ended with the abort");
      assert.equal(router.calls.length, 1);
    });

    it("an already aborted signal makes no call", async () => {
      await rejectsWith(connect().complete({ prompt: "x" }, { signal: AbortSignal.abort() }), Code.CANCELLED);
      assert.equal(router.calls.length, 0);
    });
  });

  describe("API key", () => {
    it("arrives as authorization: Bearer metadata, with per-call metadata merged in", async () => {
      const client = connect({ apiKey: "sk-test-123", metadata: { "x-tenant": "acme" } });
      await client.complete({ prompt: "k", requestId: "key-1" }, { metadata: { "x-trace": "t1" } });
      const metadata = callOf("key-1").metadata;
      assert.equal(metadata.authorization, "Bearer sk-test-123");
      assert.equal(metadata["x-tenant"], "acme");
      assert.equal(metadata["x-trace"], "t1");
    });

    it("is not sent when none is configured", async () => {
      await connect().complete({ prompt: "k", requestId: "key-2" });
      assert.equal(callOf("key-2").metadata.authorization, undefined);
    });
  });

  describe("cluster state", () => {
    it("maps the snapshot and summarises attention nodes and per-layer expert load", async () => {
      const client = connect();
      const state = await client.clusterState();
      assert.equal(state.model?.name, "echo-moe");
      assert.equal(state.model?.dispatchDtype, "bf16");
      assert.equal(state.rebalanceMode, "placement");
      assert.equal(state.placementVersion, 3);
      assert.equal(state.lastWindow?.windowId, 41);

      const nodes = await client.attentionNodes();
      assert.deepEqual(
        nodes.map((n) => [n.id, n.status]),
        [
          ["attention-0", "serving"],
          ["attention-1", "serving"],
          ["attention-2", "draining"],
        ],
      );
      assert.equal(nodes[1]?.kvUsage, 0.75);

      const load = await client.expertLoad();
      assert.equal(load?.durationMs, 10_000);
      const layer = load?.layers[0];
      assert.equal(layer?.layer, 1);
      assert.equal(layer?.totalRows, 120);
      // Physical 0 and its replica 4 are both logical expert 0.
      assert.deepEqual(layer?.logicalRows, [70, 10, 20, 20]);
      assert.deepEqual(layer?.workerRows, { "worker-0": 80, "worker-1": 40 });
      assert.deepEqual(layer?.nodeRows, { "node-a": 80, "node-b": 40 });
      assert.equal(layer?.expertImbalance, 70 / 30);
      assert.equal(layer?.workerImbalance, 80 / 60);
      assert.deepEqual(layer?.hottestExperts.slice(0, 2), [
        { expert: 0, rows: 70 },
        { expert: 2, rows: 20 },
      ]);
    });
  });

  describe("batch jobs", () => {
    it("submit, wait, and page through the results", async () => {
      const batches = connect().batches;
      const job = await batches.submit({
        requests: [{ prompt: "ab" }, { prompt: "xyz", maxTokens: 2 }],
        labels: { team: "eval" },
      });
      assert.match(job.batchId, /^batch_[0-9a-f]{32}$/);
      assert.equal(job.total, 2);
      assert.deepEqual(job.labels, { team: "eval" });
      const done = await batches.wait(job.batchId, { timeoutMs: 5_000 });
      assert.equal(done.status, "completed");
      assert.equal(done.completed, 2);
      assert.ok(done.done);
      const results = await collect(batches.allResults(job.batchId));
      assert.deepEqual(
        results.map((r) => [r.index, r.text, r.finishReason]),
        [
          [0, "ab", "stop"],
          [1, "xy", "length"],
        ],
      );
    });

    it("an unknown batch is NOT_FOUND and a taken batch id is ALREADY_EXISTS", async () => {
      const batches = connect().batches;
      await rejectsWith(batches.get("batch_nope"), Code.NOT_FOUND);
      await batches.submit({ batchId: "mine-1", requests: [{ prompt: "a" }] });
      await rejectsWith(
        batches.submit({ batchId: "mine-1", requests: [{ prompt: "a" }] }),
        Code.ALREADY_EXISTS,
      );
    });

    it("a submit retried after a lost answer returns the job it created", async () => {
      // The server stores the job but its answer is lost (UNAVAILABLE): the retry meets
      // ALREADY_EXISTS for the client-made id and returns the stored job instead of failing.
      router.behavior = { loseSubmitAnswers: 1 };
      const job = await connect().batches.submit({ requests: [{ prompt: "abc" }] });
      assert.equal(job.total, 1);
      const done = await connect().batches.wait(job.batchId, { timeoutMs: 5_000 });
      assert.equal(done.completed, 1);
    });
  });
});
