import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { createDefaultPlacement, validatePlacement, worstCaseNodes } from "../src/index.ts";
import type { Placement } from "../src/index.ts";
import { V3_SHAPE, workersOn } from "./fixtures.ts";

/** Checks the promises of the default placement on every layer. */
function assertDefaultPlacement(p: Placement): void {
  const { nRoutedExperts: E, nGroup: G } = p.shape;
  const gs = E / G;
  assert.equal(p.numPhysical, E, "no replicas by default");
  assert.equal(p.maxReplicas, 1);
  for (let l = 0; l < p.numLayers; l++) {
    // Every logical expert placed exactly once, physical id = logical id.
    for (let e = 0; e < E; e++) assert.deepEqual([...p.replicasOf(l, e)], [e]);
    // Every group wholly on one node.
    const reach = worstCaseNodes(p, l);
    for (const [g, nodes] of reach.groupNodes.entries())
      assert.equal(nodes.length, 1, `group ${g} on ${nodes.join(",")}`);
    assert.ok(reach.nodes <= p.shape.topkGroup);
    // Groups spread evenly over nodes.
    const groupsPerNode = new Map<string, number>();
    for (let g = 0; g < G; g++) {
      const node = p.nodes[p.physicalToNode[l * E + g * gs]!]!;
      groupsPerNode.set(node, (groupsPerNode.get(node) ?? 0) + 1);
    }
    const gCounts = [...groupsPerNode.values()];
    assert.ok(Math.max(...gCounts) - Math.min(...gCounts) <= 1, `groups per node ${gCounts.join(",")}`);
    // A node's experts spread evenly over that node's workers.
    for (const node of p.nodes) {
      const ws = p.workers.flatMap((w, i) => (w.node === node ? [i] : []));
      const counts = ws.map(
        (w) => p.physicalToWorker.subarray(l * E, (l + 1) * E).filter((x) => x === w).length,
      );
      assert.ok(
        Math.max(...counts) - Math.min(...counts) <= 1,
        `node ${node}: experts per worker ${counts.join(",")}`,
      );
    }
  }
  assert.equal(validatePlacement(p), p);
}

describe("createDefaultPlacement", () => {
  const cases: [string, number[]][] = [
    ["8 workers on 8 nodes", [1, 1, 1, 1, 1, 1, 1, 1]],
    ["4 workers on 2 nodes", [2, 2]],
    ["1 worker on 1 node", [1]],
    ["3 workers on 3 nodes (8 groups do not divide evenly)", [1, 1, 1]],
    ["5 workers on 3 nodes (uneven workers per node)", [2, 2, 1]],
    ["7 workers on 1 node (256 experts do not divide evenly)", [7]],
  ];
  for (const [name, perNode] of cases) {
    it(name, () => {
      const workers = workersOn(perNode);
      const p = createDefaultPlacement({ ...V3_SHAPE, workers });
      assert.equal(p.version, 1);
      assert.equal(p.nodes.length, perNode.length);
      assert.deepEqual(p.idleWorkers(), []);
      assertDefaultPlacement(p);
      // Every worker's slice covers the same experts in every layer.
      const slice = p.sliceOf(workers[0]!.workerId);
      assert.equal(slice.physical.length, V3_SHAPE.moeLayers.length);
      assert.deepEqual([...slice.physical[0]!], [...slice.physical[2]!]);
    });
  }

  it("3 nodes get 2, 3 and 3 whole groups", () => {
    const p = createDefaultPlacement({ ...V3_SHAPE, workers: workersOn([1, 1, 1]) });
    const slices = ["w0", "w1", "w2"].map((w) => p.sliceOf(w).logical[0]!);
    assert.deepEqual(
      slices.map((s) => s.length),
      [64, 96, 96],
    );
    assert.deepEqual([slices[0]![0], slices[1]![0], slices[2]![0]], [0, 64, 160]);
  });

  it("refuses more nodes than expert groups unless idle workers are allowed", () => {
    const workers = workersOn(Array.from({ length: 10 }, () => 1));
    assert.throws(
      () => createDefaultPlacement({ ...V3_SHAPE, workers }),
      (err: unknown) =>
        err instanceof ExpertMeshError &&
        err.code === Code.FAILED_PRECONDITION &&
        /10 nodes but only 8 expert groups/.test(err.message) &&
        /n8, n9 would hold no experts/.test(err.message),
    );
    const p = createDefaultPlacement({ ...V3_SHAPE, workers, allowIdleWorkers: true });
    assert.deepEqual(p.idleWorkers(), ["w8", "w9"]);
    assertDefaultPlacement(p);
  });

  it("refuses more workers on a node than it has experts unless allowed", () => {
    const shape = { moeLayers: [1], nRoutedExperts: 8, nGroup: 2, topkGroup: 1 };
    const workers = workersOn([5, 2]);
    assert.throws(() => createDefaultPlacement({ ...shape, workers }), /workers w4 would hold no experts/);
    const p = createDefaultPlacement({ ...shape, workers, allowIdleWorkers: true });
    assert.deepEqual(p.idleWorkers(), ["w4"]);
  });

  it("rejects a bad shape with INVALID_ARGUMENT naming the field", () => {
    const workers = workersOn([1]);
    assert.throws(
      () => createDefaultPlacement({ ...V3_SHAPE, nGroup: 7, workers }),
      /nGroup: must be a positive integer dividing/,
    );
    assert.throws(
      () => createDefaultPlacement({ ...V3_SHAPE, topkGroup: 9, workers }),
      /topkGroup: must be an integer in 1..nGroup/,
    );
    assert.throws(
      () => createDefaultPlacement({ ...V3_SHAPE, moeLayers: [3, 3], workers }),
      /layer 3 is listed twice/,
    );
    assert.throws(
      () => createDefaultPlacement({ ...V3_SHAPE, workers: [...workers, { workerId: "w0", node: "n1" }] }),
      (err: unknown) =>
        err instanceof ExpertMeshError &&
        err.code === Code.INVALID_ARGUMENT &&
        /w0 is listed twice/.test(err.message),
    );
  });
});
