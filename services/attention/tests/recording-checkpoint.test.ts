/**
 * The proof the attention node gives that it read no routed-expert weight: a RecordingCheckpoint
 * under loadModel sees every tensor read, routed experts included when they are loaded.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { loadModel, openCheckpoint } from "@expertmesh/model";
import type { RoutedExpertsBackend } from "@expertmesh/model";
import { RecordingCheckpoint } from "../src/core/recording-checkpoint.ts";

const TINY_V3 = fileURLToPath(new URL("../../../../shared/fixtures/tiny-v3", import.meta.url));

/** Never called: loading a model runs no forward pass. */
const unusedBackend: RoutedExpertsBackend = {
  run: () => Promise.reject(new Error("no forward pass expected")),
};

async function countsOf(experts: "none" | ReadonlyMap<number, readonly number[]>) {
  const checkpoint = new RecordingCheckpoint(await openCheckpoint(TINY_V3));
  try {
    const model = await loadModel(
      checkpoint,
      experts === "none" ? { experts, routedExperts: unusedBackend, threads: 1 } : { experts, threads: 1 },
    );
    await model.release();
    return { ...checkpoint.counts(), names: checkpoint.tensorsRead() };
  } finally {
    await checkpoint.close();
  }
}

describe("RecordingCheckpoint under loadModel", () => {
  it("counts routed-expert reads: 0 with experts 'none', 3 per expert of a local slice", async () => {
    const none = await countsOf("none");
    assert.equal(none.routedExpert, 0);
    assert.ok(none.total > 0);
    assert.ok(none.names.every((n) => !n.includes(".mlp.experts.")));

    const slice = await countsOf(new Map([[1, [0, 5]]]));
    assert.equal(slice.routedExpert, 2 * 3, "gate, up and down of two experts");
    assert.equal(slice.total, none.total + 6);
  });
});
