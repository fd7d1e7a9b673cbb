import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  AttentionService,
  ExpertService,
  FinishReason,
  InferenceService,
  MemberStatus,
  WireDtype,
} from "@expertmesh/proto";
import type {
  DispatchRequest,
  GenerateResponse,
  ServeResponse,
  ServeResponseSchema,
} from "@expertmesh/proto";
import {
  AsyncQueue,
  Code,
  ExpertMeshError,
  bytesAsFloat32,
  bytesAsInt32,
  createGrpcChannel,
  createGrpcClient,
  createGrpcServer,
  typedArrayBytes,
} from "@expertmesh/shared";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  CallContext,
  GrpcChannel,
  GrpcServer,
  HandlerErrorEvent,
  ServiceImpl,
} from "@expertmesh/shared";

/** A promise settled from outside (Node 20 has no Promise.withResolvers). */
function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

function aborted(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(signal.reason);
    else signal.addEventListener("abort", () => resolve(signal.reason), { once: true });
  });
}

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

// [rows, hidden] float32 = 20 MiB: five times grpc's default 4 MiB limit.
const ROWS = 1280;
const HIDDEN = 4096;
const TOP_K = 8;

/** What the test worker computes: each row times the sum of its slots' weights on this worker. */
function expectedSums(
  rows: Float32Array,
  ids: Int32Array,
  weights: Float32Array,
  numRows: number,
  hidden: number,
  topK: number,
): Float32Array {
  const sums = new Float32Array(numRows * hidden);
  for (let r = 0; r < numRows; r++) {
    let w = 0;
    for (let k = 0; k < topK; k++)
      if ((ids[r * topK + k] as number) >= 0) w += weights[r * topK + k] as number;
    const wf = Math.fround(w);
    for (let h = 0; h < hidden; h++) sums[r * hidden + h] = (rows[r * hidden + h] as number) * wf;
  }
  return sums;
}

function dispatchInput(
  seed: number,
  numRows = ROWS,
): { rows: Float32Array; ids: Int32Array; weights: Float32Array } {
  const rows = new Float32Array(numRows * HIDDEN);
  for (let i = 0; i < rows.length; i++) rows[i] = ((i * 7 + seed) % 1001) / 1000 - 0.5;
  const ids = new Int32Array(numRows * TOP_K);
  const weights = new Float32Array(numRows * TOP_K);
  for (let i = 0; i < ids.length; i++) {
    const onThisWorker = (i + seed) % 3 !== 0;
    ids[i] = onThisWorker ? (i + seed) % 64 : -1;
    weights[i] = onThisWorker ? 0.125 + (i % 5) / 100 : 0;
  }
  return { rows, ids, weights };
}

describe("grpc adapter over a real socket", { timeout: 30_000 }, () => {
  let server: GrpcServer;
  let channel: GrpcChannel;
  let inference: ReturnType<typeof createGrpcClient<typeof InferenceService>>;
  let expert: ReturnType<typeof createGrpcClient<typeof ExpertService>>;
  let attention: ReturnType<typeof createGrpcClient<typeof AttentionService>>;
  const logged: HandlerErrorEvent[] = [];
  // What the handlers saw when their calls were aborted, by test case.
  const abortSeen = new Map<string, ReturnType<typeof deferred<unknown>>>();
  const seen = (name: string): ReturnType<typeof deferred<unknown>> => {
    let d = abortSeen.get(name);
    if (d === undefined) abortSeen.set(name, (d = deferred<unknown>()));
    return d;
  };

  const inferenceImpl: ServiceImpl<typeof InferenceService> = {
    async *generate(request, context: CallContext) {
      const mode = request.requestId;
      if (mode === "crash") throw new Error("secret: db password is hunter2");
      if (request.prompt.case === undefined) {
        throw new ExpertMeshError(Code.INVALID_ARGUMENT, "prompt: empty", { details: { field: "prompt" } });
      }
      const ids =
        request.prompt.case === "tokenIds"
          ? request.prompt.value.ids
          : [...request.prompt.value].map((c) => c.charCodeAt(0));
      const maxTokens = request.sampling?.maxTokens ?? 0;
      for (let i = 0; i < maxTokens; i++) {
        yield {
          requestId: request.requestId,
          tokenIds: [(ids[i % ids.length] as number) + 1],
          text: `t${i}`,
        };
        if (mode === "fail-mid") throw new ExpertMeshError(Code.RESOURCE_EXHAUSTED, "kv cache full");
        if (mode === "hang") {
          seen(`generate-hang-${request.prompt.case === "text" ? request.prompt.value : ""}`).resolve(
            await aborted(context.signal),
          );
          return;
        }
      }
      yield {
        requestId: request.requestId,
        finishReason: FinishReason.LENGTH,
        usage: { promptTokens: ids.length, completionTokens: maxTokens },
      };
    },
    async getClusterState(_request, context) {
      if (context.metadata["x-test"] === "hang") {
        const reason = await aborted(context.signal);
        seen("cluster-hang").resolve(reason);
        throw reason;
      }
      return { placementVersion: 7, model: { name: "tiny", numLayers: 4, hiddenSize: HIDDEN } };
    },
  };

  const expertImpl: ServiceImpl<typeof ExpertService> = {
    getWorkerInfo(_request, context) {
      return {
        workerId: `w-${context.metadata["x-worker"] ?? "?"}`,
        node: "n1",
        status: MemberStatus.SERVING,
        placementVersion: 3,
        slices: [{ layer: 3, physicalExpertIds: [0, 1, 40], logicalExpertIds: [0, 1, 8] }],
      };
    },
    async *dispatch(requests: AsyncIterable<DispatchRequest>, context) {
      try {
        for await (const req of requests) {
          if (req.layer === 999)
            throw new ExpertMeshError(Code.INVALID_ARGUMENT, "layer: not a MoE layer", {
              details: { field: "layer" },
            });
          const rows = bytesAsFloat32(req.rows, "rows");
          const ids = bytesAsInt32(req.physicalExpertIds, "physical_expert_ids");
          const weights = bytesAsFloat32(req.expertWeights, "expert_weights");
          const sums = expectedSums(rows, ids, weights, req.numRows, req.hiddenSize, req.topK);
          yield {
            microBatchId: req.microBatchId,
            layer: req.layer,
            numRows: req.numRows,
            hiddenSize: req.hiddenSize,
            combineDtype: WireDtype.FLOAT32,
            sums: typedArrayBytes(sums),
          };
        }
      } catch (error) {
        if (context.signal.aborted) seen("dispatch-cancel").resolve(error);
        throw error;
      }
    },
  };

  // Outputs decoupled from inputs, as an engine loop produces them: a queue fed by another task.
  const attentionImpl: ServiceImpl<typeof AttentionService> = {
    serve(requests, context) {
      const out = new AsyncQueue<MessageInitShape<typeof ServeResponseSchema>>();
      const live = new Set<number>();
      void (async () => {
        for await (const request of requests) {
          const command = request.command;
          if (command.case === "addSequence") {
            live.add(command.value.sequenceId);
            out.push({
              sequenceIds: [command.value.sequenceId],
              tokenIds: [command.value.promptTokenIds.length],
            });
          } else if (command.case === "abortSequences") {
            const finishes = command.value.sequenceIds
              .filter((id) => live.delete(id))
              .map((sequenceId) => ({ sequenceId, finishReason: FinishReason.CANCELLED }));
            out.push({ finishes });
          }
        }
        out.close();
      })().catch((error: unknown) => out.fail(error instanceof Error ? error : new Error(String(error))));
      context.signal.addEventListener("abort", () => seen("serve-abort").resolve(context.signal.reason));
      return out;
    },
    getLoad() {
      return { running: 0, waiting: 0, freeKvBlocks: 10, totalKvBlocks: 10 };
    },
  };

  before(async () => {
    server = createGrpcServer({ onHandlerError: (event) => logged.push(event) });
    server
      .addService(InferenceService, inferenceImpl)
      .addService(ExpertService, expertImpl)
      .addService(AttentionService, attentionImpl);
    const port = await server.bind("127.0.0.1:0");
    assert.ok(port > 0);
    channel = createGrpcChannel(`127.0.0.1:${port}`);
    inference = createGrpcClient(InferenceService, channel);
    expert = createGrpcClient(ExpertService, channel);
    attention = createGrpcClient(AttentionService, channel);
  });

  after(async () => {
    channel.close();
    // Waits for every call to end: a stream leaked by the adapter would hang here.
    await server.tryShutdown();
  });

  it("unary: GetWorkerInfo round-trips every field and request metadata", async () => {
    const info = await expert.getWorkerInfo({}, { metadata: { "x-worker": "7" }, timeoutMs: 5_000 });
    assert.equal(info.workerId, "w-7");
    assert.equal(info.node, "n1");
    assert.equal(info.status, MemberStatus.SERVING);
    assert.equal(info.placementVersion, 3);
    assert.deepEqual(
      info.slices.map((s) => [s.layer, s.physicalExpertIds, s.logicalExpertIds]),
      [[3, [0, 1, 40], [0, 1, 8]]],
    );
  });

  it("server streaming: Generate streams every chunk then the final one", async () => {
    const chunks: GenerateResponse[] = await collect(
      inference.generate({
        requestId: "ok",
        prompt: { case: "tokenIds", value: { ids: [10, 20, 30] } },
        sampling: { maxTokens: 5 },
      }),
    );
    assert.equal(chunks.length, 6);
    assert.deepEqual(
      chunks.slice(0, 5).map((c) => c.tokenIds[0]),
      [11, 21, 31, 11, 21],
    );
    assert.deepEqual(
      chunks.slice(0, 5).map((c) => c.text),
      ["t0", "t1", "t2", "t3", "t4"],
    );
    const last = chunks[5];
    assert.equal(last?.finishReason, FinishReason.LENGTH);
    assert.equal(last?.usage?.promptTokens, 3);
    assert.equal(last?.usage?.completionTokens, 5);
  });

  it("bidi: Dispatch carries 20 MiB both ways, answers in order", async () => {
    const stream = expert.dispatch({ timeoutMs: 30_000 });
    // A 20 MiB prefill micro-batch, then a 2-row decode one.
    const sizes = [ROWS, 2];
    const inputs = sizes.map((numRows, i) => dispatchInput(i + 1, numRows));
    inputs.forEach((input, i) =>
      stream.send({
        microBatchId: i,
        layer: 5,
        placementVersion: 1,
        numRows: sizes[i],
        hiddenSize: HIDDEN,
        rowDtype: WireDtype.FLOAT32,
        rows: typedArrayBytes(input.rows),
        topK: TOP_K,
        logicalExpertIds: typedArrayBytes(input.ids),
        physicalExpertIds: typedArrayBytes(input.ids),
        expertWeights: typedArrayBytes(input.weights),
        combineDtype: WireDtype.FLOAT32,
      }),
    );
    stream.end();
    const responses = await collect(stream);
    assert.equal(responses.length, 2);
    assert.ok((responses[0]?.sums.byteLength ?? 0) > 4 * 1024 * 1024);
    responses.forEach((response, i) => {
      const input = inputs[i];
      assert.ok(input !== undefined);
      assert.equal(response.microBatchId, i);
      assert.equal(response.layer, 5);
      const numRows = sizes[i] ?? 0;
      assert.equal(response.numRows, numRows);
      assert.equal(response.sums.byteLength, numRows * HIDDEN * 4);
      const sums = bytesAsFloat32(response.sums, "sums");
      const expected = expectedSums(input.rows, input.ids, input.weights, numRows, HIDDEN, TOP_K);
      let mismatches = 0;
      for (let j = 0; j < expected.length; j++) if (sums[j] !== expected[j]) mismatches++;
      assert.equal(mismatches, 0);
    });
  });

  it("bidi: a handler may return an AsyncQueue fed by another task", async () => {
    const stream = attention.serve();
    stream.send({ command: { case: "addSequence", value: { sequenceId: 1, promptTokenIds: [5, 6, 7] } } });
    stream.send({ command: { case: "addSequence", value: { sequenceId: 2, promptTokenIds: [8] } } });
    stream.send({ command: { case: "abortSequences", value: { sequenceIds: [2, 99] } } });
    stream.end();
    const responses: ServeResponse[] = await collect(stream);
    assert.deepEqual(
      responses.map((r) => [
        r.sequenceIds,
        r.tokenIds,
        r.finishes.map((f) => [f.sequenceId, f.finishReason]),
      ]),
      [
        [[1], [3], []],
        [[2], [1], []],
        [[], [], [[2, FinishReason.CANCELLED]]],
      ],
    );
  });

  describe("errors", () => {
    it("an ExpertMeshError reaches the client with its code, message and details", async () => {
      const error = await rejectsWith(
        collect(inference.generate({ requestId: "no-prompt" })),
        Code.INVALID_ARGUMENT,
        "prompt: empty",
      );
      assert.deepEqual(error.details, { field: "prompt" });
      const event = logged.find((e) => e.code === Code.INVALID_ARGUMENT && e.method.endsWith("/Generate"));
      assert.equal(event?.internal, false);
      assert.equal(event?.method, "/expertmesh.v1.InferenceService/Generate");
    });

    it("a plain Error is INTERNAL 'internal error'; the cause is logged, never sent", async () => {
      const error = await rejectsWith(
        collect(inference.generate({ requestId: "crash", prompt: { case: "text", value: "hi" } })),
        Code.INTERNAL,
        "internal error",
      );
      assert.deepEqual(error.details, {});
      assert.ok(!JSON.stringify({ m: error.message, d: error.details }).includes("hunter2"));
      const event = logged.find((e) => e.internal && e.method.endsWith("/Generate"));
      assert.ok(event !== undefined);
      assert.equal(event.sentMessage, "internal error");
      assert.ok(event.error instanceof Error && event.error.message.includes("hunter2"));
    });

    it("an error after some chunks ends the stream with that status, chunks first", async () => {
      const received: GenerateResponse[] = [];
      const iterate = async (): Promise<void> => {
        for await (const chunk of inference.generate({
          requestId: "fail-mid",
          prompt: { case: "text", value: "abc" },
          sampling: { maxTokens: 3 },
        })) {
          received.push(chunk);
        }
      };
      await rejectsWith(iterate(), Code.RESOURCE_EXHAUSTED, "kv cache full");
      assert.equal(received.length, 1);
      assert.deepEqual(received[0]?.tokenIds, ["a".charCodeAt(0) + 1]);
    });

    it("a bidi handler's error fails the client's iteration", async () => {
      const stream = expert.dispatch();
      stream.send({ microBatchId: 1, layer: 999 });
      stream.end();
      const error = await rejectsWith(collect(stream), Code.INVALID_ARGUMENT, "layer: not a MoE layer");
      assert.deepEqual(error.details, { field: "layer" });
    });

    it("a connection that cannot be made is UNAVAILABLE", async () => {
      const nowhere = createGrpcChannel("127.0.0.1:1");
      try {
        await rejectsWith(
          createGrpcClient(ExpertService, nowhere).getWorkerInfo({}, { timeoutMs: 5_000 }),
          Code.UNAVAILABLE,
        );
      } finally {
        nowhere.close();
      }
    });
  });

  describe("cancellation and deadlines", () => {
    it("aborting the client's signal aborts the handler's signal (CANCELLED on both ends)", async () => {
      const controller = new AbortController();
      const iterate = async (): Promise<void> => {
        for await (const _chunk of inference.generate(
          { requestId: "hang", prompt: { case: "text", value: "abort" }, sampling: { maxTokens: 2 } },
          { signal: controller.signal },
        )) {
          controller.abort();
        }
      };
      await rejectsWith(iterate(), Code.CANCELLED);
      const reason = await seen("generate-hang-abort").promise;
      assert.ok(reason instanceof ExpertMeshError);
      assert.equal(Code[reason.code], "CANCELLED");
    });

    it("breaking out of a server stream cancels the call on the server", async () => {
      for await (const chunk of inference.generate({
        requestId: "hang",
        prompt: { case: "text", value: "break" },
        sampling: { maxTokens: 2 },
      })) {
        assert.equal(chunk.tokenIds.length, 1);
        break;
      }
      const reason = await seen("generate-hang-break").promise;
      assert.ok(reason instanceof ExpertMeshError);
      assert.equal(Code[reason.code], "CANCELLED");
    });

    it("cancelling a bidi stream ends the handler's request iteration with CANCELLED", async () => {
      const stream = expert.dispatch();
      const input = dispatchInput(3);
      stream.send({
        microBatchId: 9,
        layer: 1,
        numRows: 1,
        hiddenSize: HIDDEN,
        topK: TOP_K,
        rows: typedArrayBytes(input.rows.subarray(0, HIDDEN)),
        physicalExpertIds: typedArrayBytes(input.ids.subarray(0, TOP_K)),
        expertWeights: typedArrayBytes(input.weights.subarray(0, TOP_K)),
      });
      const iterator = stream[Symbol.asyncIterator]();
      const first = await iterator.next();
      assert.equal(first.done, false);
      assert.equal(first.value?.microBatchId, 9);
      stream.cancel();
      await rejectsWith(iterator.next(), Code.CANCELLED);
      const reason = await seen("dispatch-cancel").promise;
      assert.ok(reason instanceof ExpertMeshError);
      assert.equal(Code[reason.code], "CANCELLED");
    });

    it("a deadline that passes is DEADLINE_EXCEEDED on both ends", async () => {
      const started = Date.now();
      await rejectsWith(
        inference.getClusterState({}, { timeoutMs: 150, metadata: { "x-test": "hang" } }),
        Code.DEADLINE_EXCEEDED,
      );
      assert.ok(Date.now() - started >= 140);
      const reason = await seen("cluster-hang").promise;
      assert.ok(reason instanceof ExpertMeshError);
      assert.equal(Code[reason.code], "DEADLINE_EXCEEDED");
    });

    it("an already-aborted signal fails at once without a call", async () => {
      const controller = new AbortController();
      controller.abort();
      await rejectsWith(inference.getClusterState({}, { signal: controller.signal }), Code.CANCELLED);
    });
  });
});

describe("GrpcServer.shutdown", { timeout: 30_000 }, () => {
  it("cancels streams still open after the grace period; handlers see their signal abort", async () => {
    const handlerSaw = deferred<unknown>();
    const server = createGrpcServer();
    server.addService(ExpertService, {
      getWorkerInfo: () => ({ workerId: "w" }),
      async *dispatch(requests, context) {
        context.signal.addEventListener("abort", () => handlerSaw.resolve(context.signal.reason));
        for await (const request of requests) yield { microBatchId: request.microBatchId };
      },
    });
    const port = await server.bind("127.0.0.1:0");
    const channel = createGrpcChannel(`127.0.0.1:${port}`);
    try {
      const stream = createGrpcClient(ExpertService, channel).dispatch();
      stream.send({ microBatchId: 1 });
      const responses = stream[Symbol.asyncIterator]();
      const first = await responses.next();
      assert.ok(first.done !== true);
      assert.equal(first.value.microBatchId, 1);
      // The client never ends the stream: only the grace period can end it.
      await server.shutdown(100);
      const reason = await handlerSaw.promise;
      assert.ok(reason instanceof ExpertMeshError);
      assert.equal(Code[reason.code], "CANCELLED");
      await assert.rejects(responses.next(), (e: unknown) => e instanceof ExpertMeshError);
    } finally {
      channel.close();
    }
  });
});
