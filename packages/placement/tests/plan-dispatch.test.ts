import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { createDefaultPlacement, createPlacement, planDispatch } from "../src/index.ts";
import type { DispatchPlan, Placement } from "../src/index.ts";
import { V3_SHAPE, placementWithReplicas, randomRouting, seededRandom, workersOn } from "./fixtures.ts";

const TOPK = 8;

/** Checks every promise of a plan against the routing it came from. */
function assertPlanConsistent(
  p: Placement,
  plan: DispatchPlan,
  topkIds: Int32Array,
  topkWeights: Float32Array,
): void {
  const T = topkIds.length / TOPK;
  const P = p.numPhysical;
  const l = plan.moeLayer;
  const seenSlot = new Uint8Array(T * TOPK);
  const weightSum = new Float64Array(T);
  for (const d of plan.workers) {
    assert.equal(d.logical.length, d.rows.length * TOPK);
    for (let i = 0; i < d.rows.length; i++) {
      if (i > 0) assert.ok(d.rows[i]! > d.rows[i - 1]!, `worker ${d.workerId}: rows ascending, each once`);
      const r = d.rows[i]!;
      let slotsHere = 0;
      for (let j = 0; j < TOPK; j++) {
        const phys = d.physical[i * TOPK + j]!;
        if (phys < 0) {
          assert.equal(d.logical[i * TOPK + j], -1);
          assert.equal(d.weights[i * TOPK + j], 0);
          assert.notEqual(
            p.physicalToWorker[l * P + plan.physical[r * TOPK + j]!],
            d.worker,
            "slot on this worker left out",
          );
          continue;
        }
        slotsHere++;
        assert.equal(seenSlot[r * TOPK + j], 0, `row ${r} slot ${j} sent twice`);
        seenSlot[r * TOPK + j] = 1;
        assert.equal(d.logical[i * TOPK + j], topkIds[r * TOPK + j]);
        assert.equal(d.weights[i * TOPK + j], topkWeights[r * TOPK + j]);
        assert.equal(phys, plan.physical[r * TOPK + j]);
        assert.equal(
          p.physicalToLogical[l * P + phys],
          topkIds[r * TOPK + j],
          "replica of the routed expert",
        );
        assert.equal(p.physicalToWorker[l * P + phys], d.worker, "replica lives on this worker");
        weightSum[r]! += d.weights[i * TOPK + j]!;
      }
      assert.ok(slotsHere > 0, `row ${r} sent to ${d.workerId} with nothing to do`);
    }
  }
  assert.ok(
    seenSlot.every((s) => s === 1),
    "every slot dispatched",
  );
  let maxNodes = 0;
  for (let r = 0; r < T; r++) {
    let expected = 0;
    for (let j = 0; j < TOPK; j++) expected += topkWeights[r * TOPK + j]!;
    assert.ok(Math.abs(weightSum[r]! - expected) < 1e-6, `row ${r}: weights conserved`);
    const nodes = new Set<number>();
    for (let j = 0; j < TOPK; j++) nodes.add(p.physicalToNode[l * P + plan.physical[r * TOPK + j]!]!);
    assert.equal(plan.nodesPerRow[r], nodes.size);
    assert.ok(nodes.size <= p.shape.topkGroup, `row ${r} reaches ${nodes.size} nodes`);
    maxNodes = Math.max(maxNodes, nodes.size);
  }
  assert.equal(plan.maxNodesPerRow, maxNodes);
}

describe("planDispatch", () => {
  it("8 workers on 8 nodes: rows once per worker, weights conserved, nodes per row = groups routed to", () => {
    const p = createDefaultPlacement({ ...V3_SHAPE, workers: workersOn([1, 1, 1, 1, 1, 1, 1, 1]) });
    const { topkIds, topkWeights } = randomRouting(V3_SHAPE, 200, TOPK, seededRandom(1));
    const plan = planDispatch(p, { moeLayer: 1, topk: TOPK, topkIds, topkWeights });
    assertPlanConsistent(p, plan, topkIds, topkWeights);
    for (let r = 0; r < 200; r++) {
      const groups = new Set(Array.from(topkIds.subarray(r * TOPK, (r + 1) * TOPK), (e) => p.groupOf(e)));
      assert.equal(plan.nodesPerRow[r], groups.size, "each group is one node");
    }
    assert.equal(
      plan.workers.reduce((n, d) => n + d.rows.length, 0),
      plan.nodesPerRow.reduce((a, b) => a + b, 0),
    );
  });

  it("spreads a replicated expert's slots evenly over its replicas", () => {
    const hot = [5, 40, 130, 255];
    const p = placementWithReplicas(hot);
    const { topkIds, topkWeights } = randomRouting(V3_SHAPE, 256, TOPK, seededRandom(2), hot);
    for (let l = 0; l < p.numLayers; l++) {
      const plan = planDispatch(p, { moeLayer: l, topk: TOPK, topkIds, topkWeights });
      assertPlanConsistent(p, plan, topkIds, topkWeights);
      for (const e of hot) {
        const replicas = [...p.replicasOf(l, e)];
        assert.equal(replicas.length, 2);
        const uses = replicas.map((ph) => plan.physical.filter((x) => x === ph).length);
        assert.ok(
          uses[0]! > 10 && Math.abs(uses[0]! - uses[1]!) <= 1,
          `expert ${e}: replica uses ${uses.join(",")}`,
        );
      }
    }
  });

  it("is deterministic given its inputs", () => {
    const p = placementWithReplicas([1, 2, 3]);
    const { topkIds, topkWeights } = randomRouting(V3_SHAPE, 64, TOPK, seededRandom(3), [1, 2, 3]);
    const a = planDispatch(p, { moeLayer: 0, topk: TOPK, topkIds, topkWeights });
    const b = planDispatch(p, { moeLayer: 0, topk: TOPK, topkIds, topkWeights });
    assert.deepEqual(a, b);
  });

  it("prefers a replica on a node the row already reaches", () => {
    // 4 nodes, 8 groups: n0 holds groups 0-1, n1 groups 2-3, …; expert 0 also has a replica on n1.
    // With 4 nodes no 4 groups can reach 5, so the replica is allowed.
    const base = createDefaultPlacement({ ...V3_SHAPE, moeLayers: [3], workers: workersOn([1, 1, 1, 1]) });
    const p = createPlacement({
      ...base,
      numPhysical: 257,
      physicalToLogical: [...base.physicalToLogical, 0],
      physicalToWorker: [...base.physicalToWorker, 1],
    });
    const rowOnN1 = [0, 64, 65, 66, 67, 68, 69, 70]; // expert 0 + group 2 (n1)
    const rowOnN0 = [0, 1, 2, 3, 4, 5, 6, 7]; // group 0 only (n0)
    const topkIds = Int32Array.from([...rowOnN1, ...rowOnN0, ...rowOnN1]);
    const topkWeights = new Float32Array(topkIds.length).fill(0.125);
    const plan = planDispatch(p, { moeLayer: 0, topk: TOPK, topkIds, topkWeights });
    assert.deepEqual([plan.physical[0], plan.physical[8], plan.physical[16]], [256, 0, 256]);
    assert.deepEqual([...plan.nodesPerRow], [1, 1, 1]);
    assert.deepEqual([...plan.workers[0]!.rows], [1]);
    assert.deepEqual([...plan.workers[1]!.rows], [0, 2]);
  });

  it("avoids unavailable workers when a replica elsewhere exists, else fails UNAVAILABLE", () => {
    const p = placementWithReplicas([5]); // expert 5: w0 and w1
    const topkIds = Int32Array.from([5, 6, 7, 8, 9, 10, 11, 12]);
    const topkWeights = new Float32Array(8).fill(0.125);
    const down = Uint8Array.from([1, 0, 0, 0]);
    assert.throws(
      () => planDispatch(p, { moeLayer: 0, topk: TOPK, topkIds, topkWeights, unavailableWorkers: down }),
      (err: unknown) =>
        err instanceof ExpertMeshError &&
        err.code === Code.UNAVAILABLE &&
        /logical expert 6/.test(err.message),
    );
    const only5 = Int32Array.from([5, 70, 71, 72, 73, 74, 75, 76]); // 70.. live on w1
    const plan = planDispatch(p, {
      moeLayer: 0,
      topk: TOPK,
      topkIds: only5,
      topkWeights,
      unavailableWorkers: down,
    });
    assert.equal(p.physicalToWorker[plan.physical[0]!], 1);
    assert.equal(plan.workers[0]!.rows.length, 0);
  });

  it("rejects malformed routing with INVALID_ARGUMENT", () => {
    const p = createDefaultPlacement({ ...V3_SHAPE, workers: workersOn([1]) });
    const w = new Float32Array(8);
    const bad = (topkIds: Int32Array, topkWeights = w, moeLayer = 0): unknown => {
      try {
        planDispatch(p, { moeLayer, topk: TOPK, topkIds, topkWeights });
      } catch (err) {
        return err instanceof ExpertMeshError ? `${err.code} ${err.message}` : err;
      }
      return "no error";
    };
    assert.match(
      String(bad(Int32Array.from([0, 1, 2, 3, 4, 5, 6, 256]))),
      /^3 topkIds: row 0 slot 7: logical expert 256 outside 0..255/,
    );
    assert.match(
      String(bad(new Int32Array(7), new Float32Array(7))),
      /^3 topkIds: length 7 is not a multiple of topk 8/,
    );
    assert.match(String(bad(new Int32Array(8), new Float32Array(16))), /^3 topkWeights: length 16 differs/);
    assert.match(String(bad(new Int32Array(8), w, 3)), /^3 moeLayer: must be in 0..2/);
  });
});
