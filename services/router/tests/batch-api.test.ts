/**
 * The batch jobs' two front doors over real transports: the gRPC BatchService on a real
 * grpc-js server, and the HTTP routes mounted on a node:http server the way the router mounts
 * them (isBatchHttpPath → handleHttp, errors through the one error mapping).
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { BatchService, BatchStatus, FinishReason } from "@expertmesh/proto";
import {
  Code,
  ExpertMeshError,
  createGrpcChannel,
  createGrpcClient,
  createGrpcServer,
  toWireStatus,
} from "@expertmesh/shared";
import type { GrpcChannel, GrpcClient, GrpcServer } from "@expertmesh/shared";
import { startRedisServer } from "@expertmesh/shared/testing";
import type { RedisServer } from "@expertmesh/shared/testing";
import { isBatchHttpPath, startBatchJobs } from "../src/batch/index.ts";
import type { BatchModule } from "../src/batch/index.ts";
import { FakeGeneration } from "./batch-fake-generation.ts";

async function codeOf(promise: Promise<unknown>): Promise<ExpertMeshError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ExpertMeshError);
    return error;
  }
  assert.fail("expected a failure");
}

describe("batch API", () => {
  let redis: RedisServer;
  let batch: BatchModule;
  let generation: FakeGeneration;
  let grpcServer: GrpcServer;
  let channel: GrpcChannel;
  let client: GrpcClient<typeof BatchService>;
  let http: Server;
  let baseUrl: string;

  before(async () => {
    redis = await startRedisServer();
    generation = new FakeGeneration({ slots: 4, tokenDelayMs: 2 });
    batch = await startBatchJobs({
      redisUrl: redis.url,
      cluster: "api",
      generation,
      options: { maxInFlight: 2, retryBackoffMs: 5, cancelPollMs: 100, watchPollMs: 200 },
    });
    grpcServer = createGrpcServer().addService(BatchService, batch.service);
    const port = await grpcServer.bind("127.0.0.1:0");
    channel = createGrpcChannel(`127.0.0.1:${port}`);
    client = createGrpcClient(BatchService, channel);

    // Mounted as the router's HTTP server does.
    http = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://localhost");
      const send = (status: number, body: unknown): void => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      if (!isBatchHttpPath(url.pathname)) return send(404, { error: { message: "no route" } });
      batch
        .handleHttp({
          method: req.method ?? "GET",
          path: url.pathname,
          query: url.searchParams,
          body: async () => {
            const chunks: Buffer[] = [];
            for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
            return JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown;
          },
        })
        .then(
          (response) => send(response.status, response.body),
          (err: unknown) => {
            const wire = toWireStatus(err);
            send(wire.httpStatus, {
              error: { message: wire.message, code: Code[wire.code], details: wire.details },
            });
          },
        );
    });
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    baseUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  });
  after(async () => {
    channel.close();
    await grpcServer.shutdown(500);
    await new Promise((resolve) => http.close(resolve));
    await batch.close();
    await redis.stop();
  });

  describe("gRPC BatchService", () => {
    it("submit, watch until done (the stream ends), then read the results", async () => {
      const submitted = await client.submitBatch({
        requests: [
          { prompt: { case: "text", value: "one" } },
          { prompt: { case: "text", value: "two" }, requestId: "mine" },
        ],
        labels: { via: "grpc" },
      });
      const batchId = submitted.batch?.batchId ?? "";
      assert.equal(submitted.batch?.status, BatchStatus.QUEUED);
      const states: BatchStatus[] = [];
      for await (const update of client.watchBatch({ batchId }, { timeoutMs: 10_000 }))
        states.push(update.batch?.status ?? BatchStatus.UNSPECIFIED);
      assert.equal(states.at(-1), BatchStatus.COMPLETED);
      const page = await client.getBatchResults({ batchId });
      assert.equal(page.batch?.completed, 2);
      assert.deepEqual(
        page.results.map((r) => [r.requestId, r.text, r.finishReason]),
        [
          [`${batchId}-0`, "one", FinishReason.STOP],
          ["mine", "two", FinishReason.STOP],
        ],
      );
      assert.equal(page.nextOffset, 0);
      assert.deepEqual((await client.getBatch({ batchId })).batch?.labels, { via: "grpc" });
    });

    it("errors keep their code, message and field over the wire", async () => {
      const notFound = await codeOf(client.getBatch({ batchId: "batch_missing" }));
      assert.equal(notFound.code, Code.NOT_FOUND);
      const bad = await codeOf(
        client.submitBatch({ requests: [{ prompt: { case: "text", value: "ok" } }, {}] }),
      );
      assert.equal(bad.code, Code.INVALID_ARGUMENT);
      assert.equal(bad.details.field, "requests[1].prompt");
    });

    it("CancelBatch stops a running job over the wire", async () => {
      generation.tokenDelayMs = 20;
      try {
        const { batch: job } = await client.submitBatch({
          requests: Array.from({ length: 20 }, () => ({
            prompt: { case: "text" as const, value: "abcdefgh" },
          })),
        });
        const batchId = job?.batchId ?? "";
        for await (const update of client.watchBatch({ batchId }, { timeoutMs: 10_000 })) {
          if (update.batch?.status === BatchStatus.RUNNING) break;
        }
        const cancelled = await client.cancelBatch({ batchId });
        assert.ok(
          cancelled.batch?.status === BatchStatus.CANCELLING ||
            cancelled.batch?.status === BatchStatus.CANCELLED,
        );
        let final: BatchStatus | undefined;
        for await (const update of client.watchBatch({ batchId }, { timeoutMs: 10_000 }))
          final = update.batch?.status;
        assert.equal(final, BatchStatus.CANCELLED);
      } finally {
        generation.tokenDelayMs = 2;
      }
    });
  });

  describe("HTTP /v1/batch_jobs", () => {
    it("POST submits (proto JSON, snake_case), GET reads, /results pages, DELETE cancels", async () => {
      const submit = await fetch(`${baseUrl}/v1/batch_jobs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          batch_id: "http-job-1",
          requests: [{ text: "alpha", sampling: { max_tokens: 3 } }, { token_ids: { ids: [66, 67] } }],
          max_attempts: 2,
          labels: { via: "http" },
        }),
      });
      assert.equal(submit.status, 200);
      const submitted = (await submit.json()) as {
        batch: { batch_id: string; status: string; total: number; max_attempts: number };
      };
      assert.deepEqual(
        [
          submitted.batch.batch_id,
          submitted.batch.status,
          submitted.batch.total,
          submitted.batch.max_attempts,
        ],
        ["http-job-1", "BATCH_STATUS_QUEUED", 2, 2],
      );
      const finished = async (): Promise<{ batch: { status: string; completed?: number } }> => {
        for (;;) {
          const got = (await (await fetch(`${baseUrl}/v1/batch_jobs/http-job-1`)).json()) as {
            batch: { status: string; completed?: number };
          };
          if (got.batch.status === "BATCH_STATUS_COMPLETED") return got;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      };
      assert.equal((await finished()).batch.completed, 2);
      const page = (await (
        await fetch(`${baseUrl}/v1/batch_jobs/http-job-1/results?offset=0&limit=10`)
      ).json()) as {
        results: {
          index?: number;
          text: string;
          finish_reason: string;
          usage: { completion_tokens: number };
        }[];
      };
      assert.deepEqual(
        page.results.map((r) => [r.index ?? 0, r.text, r.finish_reason, r.usage.completion_tokens]),
        [
          [0, "alp", "FINISH_REASON_LENGTH", 3],
          [1, "BC", "FINISH_REASON_STOP", 2],
        ],
      );
      const cancel = await fetch(`${baseUrl}/v1/batch_jobs/http-job-1`, { method: "DELETE" });
      assert.equal(cancel.status, 200);
      assert.equal(
        ((await cancel.json()) as { batch: { status: string } }).batch.status,
        "BATCH_STATUS_COMPLETED",
        "a finished job stays finished",
      );
    });

    it("bad requests get the mapped HTTP status", async () => {
      const unknown = await fetch(`${baseUrl}/v1/batch_jobs/batch_nope`);
      assert.equal(unknown.status, 404);
      const badBody = await fetch(`${baseUrl}/v1/batch_jobs`, {
        method: "POST",
        body: JSON.stringify({ requests: [{ txt: "typo" }] }),
      });
      assert.equal(badBody.status, 400);
      assert.match(
        ((await badBody.json()) as { error: { message: string } }).error.message,
        /SubmitBatchRequest/,
      );
      const empty = await fetch(`${baseUrl}/v1/batch_jobs`, {
        method: "POST",
        body: JSON.stringify({ requests: [] }),
      });
      assert.equal(empty.status, 400);
      assert.equal((await fetch(`${baseUrl}/v1/batch_jobs`, { method: "GET" })).status, 405);
      assert.equal((await fetch(`${baseUrl}/v1/batch_jobs/x1/results`, { method: "POST" })).status, 405);
      assert.equal((await fetch(`${baseUrl}/v1/batch_jobs/x1/results?limit=-1`)).status, 400);
    });
  });
});
