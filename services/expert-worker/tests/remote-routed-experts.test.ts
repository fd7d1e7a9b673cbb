/**
 * RemoteRoutedExperts against two real expert-worker processes (tiny-v3, default placement on
 * two nodes): results equal the in-process experts per wire mode, bad requests come back
 * in-band on a stream that stays usable, and a stopped or killed worker never hangs a call.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { RemoteRoutedExperts, decodeRows, encodeDispatchRequest, encodeRows } from "@expertmesh/dispatch";
import type { DispatchRequestInit } from "@expertmesh/dispatch";
import { loadRoutedExperts, openCheckpoint } from "@expertmesh/model";
import type { LocalRoutedExperts } from "@expertmesh/model";
import { planDispatch } from "@expertmesh/placement";
import type { Placement } from "@expertmesh/placement";
import { ExpertService, MemberStatus, WireDtype } from "@expertmesh/proto";
import type { DispatchResponse } from "@expertmesh/proto";
import { Code, ExpertMeshError, createGrpcChannel, createGrpcClient } from "@expertmesh/shared";
import type { BidiStream, GrpcChannel } from "@expertmesh/shared";
import {
  TINY_V3,
  TINY_V3_HIDDEN as H,
  maxAbsDiff,
  randomBatch,
  scrapeMetrics,
  seededRandom,
  startCluster,
  sumSamples,
  tinyPlacement,
  workersOn,
} from "./cluster-fixture.ts";
import type { WorkerCluster } from "./cluster-fixture.ts";

async function loadLocalExperts(): Promise<LocalRoutedExperts> {
  const checkpoint = await openCheckpoint(TINY_V3);
  try {
    return await loadRoutedExperts(checkpoint, "all", { executionProvider: "cpu", threads: 1 });
  } finally {
    await checkpoint.close();
  }
}

/** Asserts `promise` rejects with an ExpertMeshError of `code`; returns it. */
async function rejectsWith(promise: Promise<unknown>, code: Code): Promise<ExpertMeshError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ExpertMeshError, `expected an ExpertMeshError, got ${String(err)}`);
    assert.equal(Code[err.code], Code[code], err.message);
    return err;
  }
  assert.fail(`expected a rejection with ${Code[code]}`);
}

/** `experts` with the slots not served by `worker` set to −1 (what that worker computes). */
function onlyWorker(placement: Placement, layer: number, experts: Int32Array, worker: number): Int32Array {
  const m = placement.moeLayerOf(layer);
  return experts.map((e) => (placement.physicalToWorker[m * placement.numPhysical + e] === worker ? e : -1));
}

describe("RemoteRoutedExperts against 2 expert-workers on 2 nodes (tiny-v3)", () => {
  const placement = tinyPlacement(workersOn(2, 2));
  let cluster: WorkerCluster;
  let local: LocalRoutedExperts;
  const clients: RemoteRoutedExperts[] = [];
  const client = (
    options: Partial<ConstructorParameters<typeof RemoteRoutedExperts>[0]> = {},
  ): RemoteRoutedExperts => {
    const c = new RemoteRoutedExperts({ placement, addresses: cluster.addresses, hiddenSize: H, ...options });
    clients.push(c);
    return c;
  };

  before(async () => {
    [cluster, local] = await Promise.all([startCluster(placement), loadLocalExperts()]);
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await local?.release();
    await cluster?.stop();
  });

  it("FLOAT32 wire: run() equals the in-process experts within 1e-5 on every MoE layer", async () => {
    const remote = client({ rowDtype: WireDtype.FLOAT32, combineDtype: WireDtype.FLOAT32 });
    const random = seededRandom(1);
    for (const layer of [1, 2, 3]) {
      const { rows, experts, weights } = randomBatch(24, random);
      const [got, want] = await Promise.all([
        remote.run(layer, rows, experts, weights),
        local.run(layer, rows, experts, weights),
      ]);
      const diff = maxAbsDiff(got, want);
      assert.ok(diff <= 1e-5, `layer ${layer}: max |remote − local| = ${diff}`);
      assert.ok(
        maxAbsDiff(want, new Float32Array(want.length)) > 0.01,
        "the experts produce non-trivial sums",
      );
    }
    // 24 tokens over 4 of 8 groups: both workers are needed in every layer, each row sent once per worker.
    assert.equal(remote.stats.requests, 6);
    assert.ok(remote.stats.rowsSent > 24 * 3 && remote.stats.rowsSent <= 48 * 3);
  });

  it("BF16 wire (default): within the rounding of the rows and of each worker's sums", async () => {
    const remote = client();
    const exact = client({ rowDtype: WireDtype.FLOAT32, combineDtype: WireDtype.FLOAT32 });
    const { rows, experts, weights } = randomBatch(16, seededRandom(2));
    const layer = 2;
    const got = await remote.run(layer, rows, experts, weights);
    // What the workers see: rows rounded to bf16. Each worker's partial sum is rounded to bf16
    // (≤ 2⁻⁸ relative), then the partials are added in float32.
    const bfRows = decodeRows(
      encodeRows(rows, H, WireDtype.BF16).data,
      new Uint8Array(0),
      WireDtype.BF16,
      16,
      H,
    );
    const partials = await Promise.all(
      [0, 1].map((w) => local.run(layer, bfRows, onlyWorker(placement, layer, experts, w), weights)),
    );
    for (let i = 0; i < got.length; i++) {
      const [p0, p1] = partials.map((p) => p[i] as number) as [number, number];
      const bound = (Math.abs(p0) + Math.abs(p1)) * 2 ** -8 + 1e-6;
      assert.ok(
        Math.abs((got[i] as number) - (p0 + p1)) <= bound,
        `value ${i}: ${got[i]} vs ${p0 + p1} (bound ${bound})`,
      );
    }
    const float = await exact.run(layer, rows, experts, weights);
    assert.ok(maxAbsDiff(got, float) > 0, "BF16 really went over the wire");
    assert.ok(maxAbsDiff(got, float) < 0.05);
  });

  it("reports nodes per token to the callback, never above topk_group", async () => {
    const seen: number[] = [];
    const remote = client({ onNodesPerRow: (_layer, nodes) => seen.push(...nodes), strictNodeLimit: true });
    const { rows, experts, weights } = randomBatch(10, seededRandom(3));
    await remote.run(1, rows, experts, weights);
    assert.equal(seen.length, 10);
    assert.ok(seen.every((n) => n >= 1 && n <= 2));
    assert.equal(remote.stats.nodeLimitExceeded, 0);
  });

  it("refuses FP8 rows for a hidden size that is not a multiple of 128, before sending anything", () => {
    assert.throws(
      () => client({ rowDtype: WireDtype.FP8_E4M3 }),
      (e: unknown) =>
        e instanceof ExpertMeshError && e.code === Code.INVALID_ARGUMENT && /multiple of 128/.test(e.message),
    );
  });

  it("GetWorkerInfo names the worker, its node, its status and exactly its slice", async () => {
    const channel = createGrpcChannel(cluster.worker("w1").address);
    try {
      const info = await createGrpcClient(ExpertService, channel).getWorkerInfo({}, { timeoutMs: 5_000 });
      assert.equal(info.workerId, "w1");
      assert.equal(info.node, "n1");
      assert.equal(info.status, MemberStatus.SERVING);
      assert.equal(info.placementVersion, 1);
      const slice = placement.sliceOf("w1");
      assert.deepEqual(
        info.slices.map((s) => [s.layer, s.physicalExpertIds, s.logicalExpertIds]),
        [1, 2, 3].map((layer, l) => [layer, Array.from(slice.physical[l]!), Array.from(slice.logical[l]!)]),
      );
      assert.deepEqual(
        info.slices[0]?.physicalExpertIds,
        Array.from({ length: 128 }, (_, i) => 128 + i),
      );
    } finally {
      channel.close();
    }
  });

  it("exports rows per layer, request latency and per-expert load on /metrics", async () => {
    const remote = client({ rowDtype: WireDtype.FLOAT32, combineDtype: WireDtype.FLOAT32 });
    const { rows, experts, weights } = randomBatch(16, seededRandom(6));
    const w0 = cluster.worker("w0");
    const plan = planDispatch(placement, { moeLayer: 1, topk: 8, topkIds: experts, topkWeights: weights })
      .workers[0]!;
    const slotsOf = (physical: number): number => plan.physical.filter((p) => p === physical).length;
    const hot = plan.physical.find((p) => p >= 0)!;

    const before = await scrapeMetrics(w0.metricsUrl);
    await remote.run(2, rows, experts, weights);
    const after = await scrapeMetrics(w0.metricsUrl);
    const delta = (name: string, labels: Record<string, string> = {}): number =>
      sumSamples(after, name, labels) - sumSamples(before, name, labels);

    assert.equal(delta("expertmesh_worker_rows_total", { layer: "2" }), plan.rows.length);
    assert.equal(delta("expertmesh_worker_requests_total", { layer: "2", code: "OK" }), 1);
    assert.equal(delta("expertmesh_worker_dispatch_seconds_count", { layer: "2" }), 1);
    assert.equal(
      delta("expertmesh_worker_expert_rows_total", { layer: "2" }),
      plan.physical.filter((p) => p >= 0).length,
    );
    assert.equal(
      delta("expertmesh_worker_expert_rows_total", { layer: "2", physical: String(hot) }),
      slotsOf(hot),
    );
    assert.equal(sumSamples(after, "expertmesh_worker_dispatch_streams", { worker: "w0" }) >= 1, true);
  });

  describe("bad requests get an in-band error and harm no other request on the stream", () => {
    let channel: GrpcChannel;
    let stream: BidiStream<
      typeof ExpertService.method.dispatch.input,
      typeof ExpertService.method.dispatch.output
    >;
    let responses: AsyncIterator<DispatchResponse>;
    const R = 2;
    const rows = Float32Array.from({ length: R * H }, (_, i) => Math.sin(i));
    // Row 0 → experts 0..7, row 1 → experts 8..15: all held by w0 (groups 0..3 are on node n0).
    const experts = Int32Array.from({ length: R * 8 }, (_, i) => i);
    const weights = new Float32Array(R * 8).fill(0.3);
    let nextId = 0;
    const good = (): DispatchRequestInit =>
      encodeDispatchRequest({
        microBatchId: nextId++,
        layer: 1,
        placementVersion: 1,
        rows: encodeRows(rows, H, WireDtype.FLOAT32),
        topK: 8,
        logical: experts,
        physical: experts,
        weights,
        combineDtype: WireDtype.FLOAT32,
      });
    const exchange = async (request: DispatchRequestInit): Promise<DispatchResponse> => {
      stream.send(request);
      const next = await responses.next();
      assert.ok(next.done !== true, "the stream ended");
      assert.equal(next.value.microBatchId, request.microBatchId, "answers come in request order");
      return next.value;
    };

    before(() => {
      channel = createGrpcChannel(cluster.worker("w0").address);
      stream = createGrpcClient(ExpertService, channel).dispatch();
      responses = stream[Symbol.asyncIterator]();
    });
    after(async () => {
      stream.end();
      assert.equal((await responses.next()).done, true, "the worker ends the stream after a half-close");
      channel.close();
    });

    /** Sends `bad`, expects its in-band error, then a good request on the same stream succeeds. */
    const refused = async (bad: Partial<DispatchRequestInit>, code: Code, message: RegExp): Promise<void> => {
      const response = await exchange({ ...good(), ...bad, microBatchId: nextId++ } as DispatchRequestInit);
      assert.ok(response.error !== undefined, "an in-band error");
      assert.equal(Code[response.error.code], Code[code], response.error.message);
      assert.match(response.error.message, message);
      assert.equal(response.sums.length, 0);
      const ok = await exchange(good());
      assert.equal(ok.error, undefined);
      const want = await local.run(1, rows, experts, weights);
      assert.ok(maxAbsDiff(new Float32Array(new Uint8Array(ok.sums).buffer), want) <= 1e-5);
    };

    it("rows of the wrong size → INVALID_ARGUMENT", () =>
      refused(
        { rows: new Uint8Array(R * H * 4 - 4) },
        Code.INVALID_ARGUMENT,
        /^rows: expected 512 bytes, got 508/,
      ));
    it("hidden size other than the model's → INVALID_ARGUMENT", () =>
      refused({ hiddenSize: 32 }, Code.INVALID_ARGUMENT, /^hidden_size: expected 64/));
    it("FP8 rows on this model (hidden 64) → INVALID_ARGUMENT", () =>
      refused(
        { rowDtype: WireDtype.FP8_E4M3, rows: new Uint8Array(R * H), rowScales: new Uint8Array(R * 4) },
        Code.INVALID_ARGUMENT,
        /multiple of 128/,
      ));
    it("a dense layer → INVALID_ARGUMENT", () =>
      refused({ layer: 0 }, Code.INVALID_ARGUMENT, /model layer 0 is not a MoE layer/));
    it("a layer the model does not have → INVALID_ARGUMENT", () =>
      refused({ layer: 99 }, Code.INVALID_ARGUMENT, /model layer 99 is not a MoE layer/));
    it("another placement version → FAILED_PRECONDITION", () =>
      refused(
        { placementVersion: 2 },
        Code.FAILED_PRECONDITION,
        /placement v2 is not served by worker w0, which holds v1/,
      ));
    it("an expert held by another worker → FAILED_PRECONDITION", () => {
      const ids = Int32Array.from(experts, (e) => (e === 3 ? 200 : e));
      const bytes = new Uint8Array(ids.buffer);
      return refused(
        { logicalExpertIds: bytes, physicalExpertIds: bytes },
        Code.FAILED_PRECONDITION,
        /physical expert 200 of layer 1 is not held by worker w0/,
      );
    });
    it("a physical id outside the placement → INVALID_ARGUMENT", () => {
      const ids = new Uint8Array(Int32Array.from(experts, (e) => (e === 3 ? 256 : e)).buffer);
      return refused(
        { logicalExpertIds: ids, physicalExpertIds: ids },
        Code.INVALID_ARGUMENT,
        /physical expert 256 outside 0\.\.255/,
      );
    });
    it("a physical expert that is no copy of the slot's logical expert → INVALID_ARGUMENT", () => {
      const physical = new Uint8Array(Int32Array.from(experts, (e) => (e === 3 ? 4 : e)).buffer);
      return refused(
        { physicalExpertIds: physical },
        Code.INVALID_ARGUMENT,
        /logical expert 3, but physical expert 4 is a copy of 4/,
      );
    });
  });

  it("a worker that stops answering fails the call at its deadline; the late answer is dropped and the stream goes on", async () => {
    const remote = client({ rowDtype: WireDtype.FLOAT32, combineDtype: WireDtype.FLOAT32, timeoutMs: 1_000 });
    const { rows, experts, weights } = randomBatch(8, seededRandom(4));
    const w1 = cluster.worker("w1").process;
    await remote.run(3, rows, experts, weights); // stream open
    w1.kill("SIGSTOP");
    try {
      const started = Date.now();
      await rejectsWith(remote.run(3, rows, experts, weights), Code.DEADLINE_EXCEEDED);
      assert.ok(Date.now() - started < 3_000);
    } finally {
      w1.kill("SIGCONT");
    }
    // The stale answer arrives first on the same stream and is dropped; this call gets its own.
    const got = await remote.run(3, rows, experts, weights);
    assert.ok(maxAbsDiff(got, await local.run(3, rows, experts, weights)) <= 1e-5);
  });

  it("close() does not wait on a stuck worker beyond its grace; its calls fail CANCELLED", async () => {
    const remote = new RemoteRoutedExperts({
      placement,
      addresses: cluster.addresses,
      hiddenSize: H,
      timeoutMs: 20_000,
    });
    const { rows, experts, weights } = randomBatch(4, seededRandom(7));
    await remote.run(2, rows, experts, weights);
    const w0 = cluster.worker("w0").process;
    w0.kill("SIGSTOP");
    try {
      const pending = remote.run(2, rows, experts, weights);
      const started = Date.now();
      await remote.close(300);
      assert.ok(Date.now() - started < 3_000);
      await rejectsWith(pending, Code.CANCELLED);
    } finally {
      w0.kill("SIGCONT");
    }
  });

  it("killing a worker fails the pending and the next calls with UNAVAILABLE (no hang); calls not needing it go on", async () => {
    const remote = client({
      rowDtype: WireDtype.FLOAT32,
      combineDtype: WireDtype.FLOAT32,
      timeoutMs: 20_000,
      reconnectBackoffMs: 300,
    });
    const { rows, experts, weights } = randomBatch(8, seededRandom(5));
    const w1 = cluster.worker("w1").process;
    await remote.run(1, rows, experts, weights);
    w1.kill("SIGSTOP"); // so the next call is surely pending when the worker dies
    const pending = remote.run(1, rows, experts, weights);
    const started = Date.now();
    w1.kill("SIGKILL");
    const pendingError = await rejectsWith(pending, Code.UNAVAILABLE);
    assert.match(pendingError.message, /worker w1/);
    assert.ok(Date.now() - started < 5_000, "failed fast, not at the deadline");
    // Next call: w1 is left out of planning and its experts have no replica → UNAVAILABLE at once.
    await rejectsWith(remote.run(1, rows, experts, weights), Code.UNAVAILABLE);
    // After the backoff a new stream is tried: connection refused → UNAVAILABLE, again fast.
    await new Promise((resolve) => setTimeout(resolve, 400));
    const retried = Date.now();
    await rejectsWith(remote.run(1, rows, experts, weights), Code.UNAVAILABLE);
    assert.ok(Date.now() - retried < 5_000);
    // Tokens routed only to node n0's groups (experts 0..127) still get their answer from w0.
    const onlyN0 = experts.map((e) => e % 128);
    const got = await remote.run(1, rows, onlyN0, weights);
    assert.ok(maxAbsDiff(got, await local.run(1, rows, onlyN0, weights)) <= 1e-5);
  });
});
