import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import {
  Placement,
  createDefaultPlacement,
  createPlacement,
  validatePlacement,
  worstCaseNodes,
} from "../src/index.ts";
import type { PlacementSpec } from "../src/index.ts";
import { V3_SHAPE, workersOn } from "./fixtures.ts";

/** The arrays of a default placement, to edit by hand. */
function defaultSpec(
  perNode: number[],
): PlacementSpec & { physicalToLogical: Int32Array; physicalToWorker: Int32Array } {
  const p = createDefaultPlacement({ ...V3_SHAPE, workers: workersOn(perNode) });
  return {
    version: 2,
    shape: p.shape,
    workers: p.workers,
    numPhysical: p.numPhysical,
    physicalToLogical: p.physicalToLogical.slice(),
    physicalToWorker: p.physicalToWorker.slice(),
  };
}

/** Adds one physical replica of `logical` on `worker` in every layer (P grows by one). */
function withReplica(spec: ReturnType<typeof defaultSpec>, logical: number, worker: number): PlacementSpec {
  const L = spec.shape.moeLayers.length;
  const P = spec.numPhysical;
  const p2l = new Int32Array(L * (P + 1));
  const p2w = new Int32Array(L * (P + 1));
  for (let l = 0; l < L; l++) {
    p2l.set(spec.physicalToLogical.subarray(l * P, (l + 1) * P), l * (P + 1));
    p2w.set(spec.physicalToWorker.subarray(l * P, (l + 1) * P), l * (P + 1));
    p2l[l * (P + 1) + P] = logical;
    p2w[l * (P + 1) + P] = worker;
  }
  return { ...spec, numPhysical: P + 1, physicalToLogical: p2l, physicalToWorker: p2w };
}

function refusal(pattern: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof ExpertMeshError, String(err));
    assert.equal(err.code, Code.FAILED_PRECONDITION);
    assert.match(err.message, pattern);
    return true;
  };
}

describe("validatePlacement: ≤ topk_group nodes per token", () => {
  it("refuses a group split over two of 8 nodes: 5 nodes become reachable with topk_group 4", () => {
    const spec = defaultSpec([1, 1, 1, 1, 1, 1, 1, 1]); // group g on node n<g>
    // Move experts 16..31 of group 0 (layer 4 only) onto w1, the worker of node n1.
    const E = 256;
    for (let e = 16; e < 32; e++) spec.physicalToWorker[1 * E + e] = 1;
    const p = new Placement(spec); // structurally fine
    const reach = worstCaseNodes(p, 1);
    assert.equal(reach.nodes, 5);
    assert.equal(worstCaseNodes(p, 0).nodes, 4);
    assert.throws(
      () => validatePlacement(p),
      (err: unknown) => {
        assert.ok(err instanceof ExpertMeshError);
        assert.equal(err.code, Code.FAILED_PRECONDITION);
        assert.match(
          err.message,
          /^placement v2 layer 4: expert groups \[0, \d, \d, \d\] together reach 5 nodes \(n0, n1, n\d, n\d, n\d\), more than topk_group = 4/,
        );
        assert.match(err.message, /groups spanning several nodes: group 0 on n0, n1\./);
        assert.equal(err.details.layer, "4");
        assert.equal(err.details.nodes?.split(",").length, 5);
        return true;
      },
    );
    assert.throws(() => createPlacement(spec), refusal(/layer 4: .* reach 5 nodes/));
  });

  it("refuses a hot-expert replica on another group's node", () => {
    const spec = defaultSpec([1, 1, 1, 1, 1, 1, 1, 1]);
    assert.throws(
      () => createPlacement(withReplica(spec, 0, 3)),
      refusal(/layer 3: .*reach 5 nodes.*group 0 on n0, n3\./),
    );
  });

  it("accepts a replica on another worker of the group's own node", () => {
    const spec = defaultSpec([2, 2]); // w0, w1 on n0 (groups 0-3); w2, w3 on n1
    const p = createPlacement(withReplica(spec, 0, 1));
    assert.deepEqual([...p.replicasOf(0, 0)], [0, 256]);
    assert.equal(p.workers[p.physicalToWorker[256]!]!.workerId, "w1");
  });

  it("accepts a group spanning two nodes when no 4 groups can reach 5 nodes (the rule is exact)", () => {
    const spec = defaultSpec([1, 1, 1, 1]); // 4 nodes, 2 groups each
    for (let e = 0; e < 16; e++) spec.physicalToWorker[e] = 1; // group 0 half on n1 (layer 3)
    const p = createPlacement(spec);
    const reach = worstCaseNodes(p, 0);
    assert.deepEqual(reach.groupNodes[0], ["n0", "n1"]);
    // A sum-of-sizes bound would say 2+1+1+1 = 5; the exact union is 4.
    assert.equal(reach.nodes, 4);
  });

  it("is exact on small shapes: 2 of 4 groups, 3 nodes", () => {
    const shape = { moeLayers: [0], nRoutedExperts: 8, nGroup: 4, topkGroup: 2 };
    const workers = workersOn([1, 1, 1]);
    // groups: g0 {n0,n1}, g1 {n0,n1}, g2 {n0}, g3 {n1}: any 2 groups reach ≤ 2 nodes; n2 holds nothing.
    const base = { version: 1, shape, workers, numPhysical: 8, physicalToLogical: [0, 1, 2, 3, 4, 5, 6, 7] };
    const ok = createPlacement({ ...base, physicalToWorker: [0, 1, 1, 0, 0, 0, 1, 1] });
    assert.equal(worstCaseNodes(ok, 0).nodes, 2);
    // Put expert 7 (g3) on n2: g0 + g3 reach n0, n1, n2.
    assert.throws(
      () => createPlacement({ ...base, physicalToWorker: [0, 1, 1, 0, 0, 0, 1, 2] }),
      refusal(
        /layer 0: expert groups \[0, 3\] together reach 3 nodes \(n0, n1, n2\), more than topk_group = 2/,
      ),
    );
  });
});

describe("validatePlacement: structure", () => {
  const shape = { moeLayers: [7], nRoutedExperts: 4, nGroup: 1, topkGroup: 1 };
  const workers = workersOn([2]);
  const spec = {
    version: 1,
    shape,
    workers,
    numPhysical: 4,
    physicalToLogical: [0, 1, 2, 3],
    physicalToWorker: [0, 0, 1, 1],
  };

  it("refuses a logical expert with no physical replica", () => {
    assert.throws(
      () => createPlacement({ ...spec, physicalToLogical: [0, 1, 1, 3] }),
      refusal(/^placement v1 layer 7: logical expert 2 has no physical replica$/),
    );
  });
  it("refuses a physical expert mapped outside the logical range", () => {
    assert.throws(
      () => createPlacement({ ...spec, physicalToLogical: [0, 1, 2, 4] }),
      refusal(/physical expert 3 maps to logical expert 4, outside 0..3/),
    );
  });
  it("refuses an unknown worker", () => {
    assert.throws(
      () => createPlacement({ ...spec, physicalToWorker: [0, 0, 2, 1] }),
      refusal(/physical expert 2 is on unknown worker #2/),
    );
  });
  it("refuses arrays of the wrong length and non-integer entries", () => {
    assert.throws(
      () => createPlacement({ ...spec, physicalToWorker: [0, 0, 1] }),
      refusal(/physicalToWorker has 3 entries, expected layers × numPhysical = 1 × 4/),
    );
    assert.throws(
      () => createPlacement({ ...spec, physicalToLogical: [0, 1, 2.5, 3] }),
      refusal(/non-integer entry/),
    );
  });
  it("refuses a placement whose arrays were edited after construction", () => {
    const p = createPlacement(spec);
    p.physicalToWorker[0] = 9;
    assert.throws(() => validatePlacement(p), refusal(/unknown worker #9/));
  });
});
