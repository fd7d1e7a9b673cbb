/**
 * The worker core in-process (no network): the slice it loads under a placement with replicas,
 * physical → logical mapping of a request, load counting, and the startup checks.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { decodeDispatchRequest, encodeDispatchRequest, encodeRows } from "@expertmesh/dispatch";
import { loadRoutedExperts, openCheckpoint } from "@expertmesh/model";
import type { LocalRoutedExperts, ModelConfig } from "@expertmesh/model";
import { createPlacement, planDispatch } from "@expertmesh/placement";
import type { Placement } from "@expertmesh/placement";
import { WireDtype, DispatchRequestSchema } from "@expertmesh/proto";
import { create } from "@bufbuild/protobuf";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { ExpertWorker } from "../src/core/expert-worker.ts";
import { checkPlacementFitsModel, heldExperts } from "../src/core/held-experts.ts";
import { loadWorkerConfig } from "../src/config.ts";
import {
  TINY_V3,
  TINY_V3_HIDDEN as H,
  TINY_V3_SHAPE,
  maxAbsDiff,
  randomBatch,
  seededRandom,
} from "./cluster-fixture.ts";

/**
 * tiny-v3 on two workers of one node: w0 holds experts 0..127, w1 128..255, plus physical
 * 256 = a second copy of logical 5 on w0 and physical 257 = a copy of logical 200 on w0.
 */
function replicatedPlacement(): Placement {
  const E = 256;
  const P = E + 2;
  const L = TINY_V3_SHAPE.moeLayers.length;
  const physicalToLogical: number[] = [];
  const physicalToWorker: number[] = [];
  for (let l = 0; l < L; l++) {
    for (let p = 0; p < E; p++) {
      physicalToLogical.push(p);
      physicalToWorker.push(p < 128 ? 0 : 1);
    }
    physicalToLogical.push(5, 200);
    physicalToWorker.push(0, 0);
  }
  return createPlacement({
    version: 4,
    shape: TINY_V3_SHAPE,
    workers: [
      { workerId: "w0", node: "n0" },
      { workerId: "w1", node: "n0" },
    ],
    numPhysical: P,
    physicalToLogical,
    physicalToWorker,
  });
}

describe("expert-worker core", () => {
  const placement = replicatedPlacement();
  let config: ModelConfig;
  let all: LocalRoutedExperts;
  let slice: LocalRoutedExperts;

  before(async () => {
    const checkpoint = await openCheckpoint(TINY_V3);
    try {
      config = checkpoint.config;
      const options = { executionProvider: "cpu", threads: 1 };
      all = await loadRoutedExperts(checkpoint, "all", options);
      slice = await loadRoutedExperts(checkpoint, heldExperts(placement, "w0").experts, options);
    } finally {
      await checkpoint.close();
    }
  });
  after(async () => {
    await all?.release();
    await slice?.release();
  });

  it("loads each held logical expert once, replicas included, and nothing else", () => {
    const held = heldExperts(placement, "w0", "n0");
    const expected = [...Array.from({ length: 128 }, (_, e) => e), 200];
    for (const layer of [1, 2, 3]) assert.deepEqual(held.experts.get(layer), expected);
    assert.deepEqual(
      [...slice.slice()].map(([layer, experts]) => [layer, experts.length]),
      [
        [1, 129],
        [2, 129],
        [3, 129],
      ],
    );
    // physical 256 (copy of 5) and 257 (copy of 200) are held; 200 itself is not.
    assert.equal(held.held[256], 1);
    assert.equal(held.held[257], 1);
    assert.equal(held.held[200], 0);
  });

  it("computes with replicas: physical ids map to their logical experts; load counts per physical expert", async () => {
    const recorded: [number, Int32Array][] = [];
    const worker = new ExpertWorker({
      placement,
      held: heldExperts(placement, "w0"),
      experts: slice,
      load: { recordSlots: (moeLayer, physical) => recorded.push([moeLayer, Int32Array.from(physical)]) },
    });
    const { rows, experts, weights } = randomBatch(20, seededRandom(8), {
      nRoutedExperts: 128,
      nGroup: 4,
      topkGroup: 4,
    });
    // Slot 6 of every row → logical 5, whose slots all go to its copy 256 (both copies are on w0:
    // rewrite the plan's choice); slot 7 → logical 200 (copies 200 on w1, 257 on w0: the plan spreads them).
    const routed = experts.map((e, i) => (i % 8 === 6 ? 5 : i % 8 === 7 ? 200 : e));
    const plan = planDispatch(placement, { moeLayer: 0, topk: 8, topkIds: routed, topkWeights: weights })
      .workers[0]!;
    const physical = plan.physical.map((p, i) => (plan.logical[i] === 5 ? 256 : p));
    assert.ok(physical.includes(256) && physical.includes(257), "the batch exercises both replicas");
    const request = decodeDispatchRequest(
      create(
        DispatchRequestSchema,
        encodeDispatchRequest({
          microBatchId: 1,
          layer: 1,
          placementVersion: 4,
          rows: encodeRows(gather(rows, plan.rows), H, WireDtype.FLOAT32),
          topK: 8,
          logical: plan.logical,
          physical,
          weights: plan.weights,
          combineDtype: WireDtype.FLOAT32,
        }),
      ),
      { hiddenSize: H },
    );
    const got = await worker.compute(request);
    const want = await all.run(1, gather(rows, plan.rows), plan.logical, plan.weights);
    assert.ok(maxAbsDiff(got, want) <= 1e-5);
    assert.equal(recorded.length, 1);
    assert.equal(recorded[0]![0], 0);
    assert.deepEqual(recorded[0]![1], physical);
    // servedSlots is [layers, P]: MoE layer 0 (model layer 1) starts at 0.
    assert.equal(worker.servedSlots[256], physical.filter((p) => p === 256).length);
    assert.equal(worker.servedSlots[5], 0);

    // A slot naming physical 256 with another logical expert is refused before any compute.
    const wrong = {
      ...request,
      logical: Int32Array.from(request.logical, (l, i) => (physical[i] === 256 ? 6 : l)),
    };
    await assert.rejects(
      worker.compute(wrong),
      (e: unknown) => e instanceof ExpertMeshError && e.code === Code.INVALID_ARGUMENT,
    );
    assert.equal(recorded.length, 1, "a refused request counts no load");
  });

  it("refuses at startup a placement for another model, a worker not in it, and a node mismatch", () => {
    checkPlacementFitsModel(placement, config);
    const other = createPlacement({
      version: 1,
      shape: { ...TINY_V3_SHAPE, moeLayers: [1, 2] },
      workers: [{ workerId: "w0", node: "n0" }],
      numPhysical: 256,
      physicalToLogical: Array.from({ length: 512 }, (_, i) => i % 256),
      physicalToWorker: new Array<number>(512).fill(0),
    });
    assert.throws(
      () => checkPlacementFitsModel(other, config),
      (e: unknown) =>
        e instanceof ExpertMeshError &&
        e.code === Code.FAILED_PRECONDITION &&
        /MoE layers \[1, 2\], the model's are \[1, 2, 3\]/.test(e.message),
    );
    assert.throws(
      () => heldExperts(placement, "w9"),
      (e: unknown) => e instanceof ExpertMeshError && e.code === Code.NOT_FOUND,
    );
    assert.throws(
      () => heldExperts(placement, "w0", "n7"),
      (e: unknown) =>
        e instanceof ExpertMeshError && e.code === Code.FAILED_PRECONDITION && /node n7/.test(e.message),
    );
  });

  it("config: every problem in one error; defaults filled in", () => {
    assert.throws(
      () => loadWorkerConfig({ EXPERTMESH_PORT: "99999", EXPERTMESH_LOAD_WINDOW: "5" }),
      (e: unknown) =>
        e instanceof ExpertMeshError &&
        e.code === Code.INVALID_ARGUMENT &&
        ["EXPERTMESH_MODEL_DIR", "EXPERTMESH_WORKER_ID", "EXPERTMESH_PORT", "EXPERTMESH_LOAD_WINDOW"].every(
          (v) => e.message.includes(v),
        ),
    );
    const config = loadWorkerConfig({
      EXPERTMESH_MODEL_DIR: "/m",
      EXPERTMESH_WORKER_ID: "w3",
      EXPERTMESH_LOAD_WINDOW: "2s",
    });
    assert.equal(config.loadWindow, 2_000);
    assert.equal(config.executionProvider, "cpu");
    assert.equal(config.placementFile, undefined);
    assert.equal(config.redisUrl, undefined);
  });
});

/** rows [T, H] → the listed rows, in order. */
function gather(rows: Float32Array, index: Int32Array): Float32Array {
  const out = new Float32Array(index.length * H);
  index.forEach((r, i) => out.set(rows.subarray(r * H, (r + 1) * H), i * H));
  return out;
}
