/**
 * AttentionService over gRPC (in-process server on port 0, routed experts local): packed step
 * reports with logprobs, error finishes for bad sequences, OK after the router half-closes,
 * GetLoad, and a cancelled stream giving its KV blocks back.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { EngineCore } from "@expertmesh/engine";
import { loadModel } from "@expertmesh/model";
import type { DeepSeekModel } from "@expertmesh/model";
import { AttentionService, FinishReason } from "@expertmesh/proto";
import type { ServeResponse } from "@expertmesh/proto";
import {
  Code,
  ExpertMeshError,
  createGrpcChannel,
  createGrpcClient,
  createLogger,
  createGrpcServer,
} from "@expertmesh/shared";
import type { GrpcChannel, GrpcClient, GrpcServer } from "@expertmesh/shared";
import { waitUntil } from "@expertmesh/shared/testing";
import { ServeLoop } from "../src/core/serve-loop.ts";
import { attentionServiceImpl } from "../src/server/attention-service.ts";

const TINY_V3 = fileURLToPath(new URL("../../../../shared/fixtures/tiny-v3", import.meta.url));

describe("AttentionService over gRPC", () => {
  let model: DeepSeekModel;
  let core: EngineCore;
  let server: GrpcServer;
  let channel: GrpcChannel;
  let client: GrpcClient<typeof AttentionService>;

  before(async () => {
    model = await loadModel(TINY_V3, { threads: 1 });
    core = new EngineCore(model, { numKvBlocks: 128, blockSize: 4, maxNumSeqs: 8 });
    const loop = new ServeLoop(core);
    server = createGrpcServer();
    server.addService(
      AttentionService,
      attentionServiceImpl({
        loop,
        logger: createLogger({ service: "attention", level: "silent" }),
        defaultMaxTokens: 3,
      }),
    );
    const port = await server.bind("127.0.0.1:0");
    channel = createGrpcChannel(`127.0.0.1:${port}`);
    client = createGrpcClient(AttentionService, channel);
  });
  after(async () => {
    channel?.close();
    await server?.shutdown(100);
    await model?.release();
  });

  it("streams packed step reports and finishes, then ends OK after the half-close", async () => {
    const stream = client.serve();
    stream.send({
      command: {
        case: "addSequence",
        value: {
          sequenceId: 7,
          promptTokenIds: [68, 0, 408, 255, 511],
          sampling: { maxTokens: 4, ignoreEos: true },
          logprobs: true,
          topLogprobs: 2,
        },
      },
    });
    // max_tokens 0: the node's default (3); greedy by default (temperature 0).
    stream.send({
      command: {
        case: "addSequence",
        value: { sequenceId: 8, promptTokenIds: [5, 6, 7], sampling: { ignoreEos: true } },
      },
    });
    stream.send({
      command: { case: "addSequence", value: { sequenceId: 9, promptTokenIds: [5], sampling: { topK: -2 } } },
    });
    stream.end();
    const responses: ServeResponse[] = [];
    for await (const r of stream) responses.push(r);

    const tokens = new Map<number, number[]>();
    for (const r of responses) {
      assert.equal(r.sequenceIds.length, r.tokenIds.length);
      if (r.logprobs.length > 0) assert.equal(r.logprobs.length, r.sequenceIds.length);
      if (r.topCounts.length > 0) {
        assert.equal(r.topCounts.length, r.sequenceIds.length);
        const total = r.topCounts.reduce((a, b) => a + b, 0);
        assert.equal(r.topTokenIds.length, total);
        assert.equal(r.topLogprobs.length, total);
      }
      r.sequenceIds.forEach((seq, i) => {
        tokens.set(seq, [...(tokens.get(seq) ?? []), r.tokenIds[i]!]);
        if (seq === 7) {
          assert.ok(r.logprobs[i]! < 0, "a real logprob");
          assert.equal(r.topCounts[i], 2);
        } else {
          if (r.logprobs.length > 0) assert.equal(r.logprobs[i], 0);
          if (r.topCounts.length > 0) assert.equal(r.topCounts[i], 0);
        }
      });
    }
    assert.equal(tokens.get(7)?.length, 4);
    assert.equal(tokens.get(8)?.length, 3);
    const finishes = responses.flatMap((r) => r.finishes);
    const bySeq = new Map(finishes.map((f) => [f.sequenceId, f]));
    assert.equal(bySeq.get(7)?.finishReason, FinishReason.LENGTH);
    assert.deepEqual([bySeq.get(7)?.usage?.promptTokens, bySeq.get(7)?.usage?.completionTokens], [5, 4]);
    const bad = bySeq.get(9)!;
    assert.equal(bad.finishReason, FinishReason.ERROR);
    assert.equal(bad.error?.code, Code.INVALID_ARGUMENT);
    assert.equal(bad.error?.details.field, "sampling.top_k");
    assert.equal(core.pool.usedBlocks, 0);
  });

  it("GetLoad reports the scheduler; a cancelled stream frees its KV blocks", async () => {
    const idle = await client.getLoad({});
    assert.deepEqual(
      [idle.running, idle.waiting, idle.freeKvBlocks, idle.totalKvBlocks, idle.kvBlockSize, idle.maxRunning],
      [0, 0, 128, 128, 4, 8],
    );
    const controller = new AbortController();
    const stream = client.serve({ signal: controller.signal });
    stream.send({
      command: {
        case: "addSequence",
        value: {
          sequenceId: 1,
          promptTokenIds: [5, 6, 7, 8, 9],
          sampling: { maxTokens: 400, ignoreEos: true },
        },
      },
    });
    const it = stream[Symbol.asyncIterator]();
    await it.next();
    const busy = await client.getLoad({});
    assert.equal(busy.running, 1);
    assert.ok(busy.freeKvBlocks < 128);
    controller.abort();
    await assert.rejects(
      async () => {
        for (;;) if ((await it.next()).done === true) break;
      },
      (e: unknown) => e instanceof ExpertMeshError && e.code === Code.CANCELLED,
    );
    await waitUntil(async () => (await client.getLoad({})).freeKvBlocks === 128, {
      what: "KV blocks freed",
      timeoutMs: 10_000,
    });
    assert.equal(core.hasUnfinishedRequests(), false);
  });
});
