import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { createDefaultPlacement, placementFromJSON, placementToJSON } from "../src/index.ts";
import { V3_SHAPE, workersOn } from "./fixtures.ts";

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof ExpertMeshError) return `${Code[err.code]}: ${err.message}`;
    throw err;
  }
  return "no error";
}

describe("placement JSON", () => {
  const p = createDefaultPlacement({ ...V3_SHAPE, workers: workersOn([2, 1]), version: 7 });

  it("round-trips through a string", () => {
    const back = placementFromJSON(JSON.stringify(placementToJSON(p)));
    assert.equal(back.version, 7);
    assert.deepEqual(back.shape, p.shape);
    assert.deepEqual(back.workers, p.workers);
    assert.deepEqual(back.physicalToLogical, p.physicalToLogical);
    assert.deepEqual(back.physicalToWorker, p.physicalToWorker);
    assert.deepEqual(back.logicalToAllPhysical, p.logicalToAllPhysical);
    assert.deepEqual(placementToJSON(back), placementToJSON(p));
  });

  it("refuses on load a document that breaks the nodes-per-token invariant", () => {
    const eight = createDefaultPlacement({ ...V3_SHAPE, workers: workersOn([1, 1, 1, 1, 1, 1, 1, 1]) });
    const doc = placementToJSON(eight);
    doc.layers[2]!.physicalToWorker[0] = 5; // expert 0 (group 0, node n0) moved to n5
    assert.match(
      code(() => placementFromJSON(doc)),
      /^FAILED_PRECONDITION: placement v1 layer 5: .* reach 5 nodes .*group 0 on n0, n5\./,
    );
  });

  it("refuses malformed documents with INVALID_ARGUMENT", () => {
    const doc = placementToJSON(p);
    assert.match(
      code(() => placementFromJSON("{")),
      /^INVALID_ARGUMENT: placement: not valid JSON/,
    );
    assert.match(
      code(() => placementFromJSON({ ...doc, format: "other" })),
      /^INVALID_ARGUMENT: placement.format: expected/,
    );
    assert.match(
      code(() => placementFromJSON({ ...doc, layers: doc.layers.slice(1) })),
      /has 2 entries for 3 MoE layers/,
    );
    const short = structuredClone(doc);
    short.layers[0]!.physicalToLogical.pop();
    assert.match(
      code(() => placementFromJSON(short)),
      /^INVALID_ARGUMENT: placement.layers\[0\]: each array must have numPhysical = 256/,
    );
    assert.match(
      code(() => placementFromJSON({ ...doc, version: 0 })),
      /^INVALID_ARGUMENT: version: must be a positive integer/,
    );
    assert.match(
      code(() => placementFromJSON({ ...doc, workers: [{ workerId: "w0" }] })),
      /^INVALID_ARGUMENT: workers: worker w0 has no node/,
    );
  });
});
