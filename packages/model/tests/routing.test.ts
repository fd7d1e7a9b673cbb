import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { openCheckpoint } from "../src/checkpoint/checkpoint.ts";
import { routeTokens } from "../src/runtime/routing.ts";
import { FIXTURE_NAMES, fixtureDir, readGolden } from "./fixtures.ts";

/** Router scores sigmoid(x · gateᵀ), the logit in float64 then rounded (the reference uses a float32 GEMM). */
function routerScores(rows: number[][], gate: Float32Array, experts: number, hidden: number): Float32Array {
  const out = new Float32Array(rows.length * experts);
  rows.forEach((x, r) => {
    for (let e = 0; e < experts; e++) {
      let acc = 0;
      for (let h = 0; h < hidden; h++) acc += (x[h] as number) * (gate[e * hidden + h] as number);
      out[r * experts + e] = 1 / (1 + Math.exp(-Math.fround(acc)));
    }
  });
  return out;
}

for (const fixture of FIXTURE_NAMES) {
  describe(`routing on ${fixture} golden gate inputs`, () => {
    it("reproduces experts, groups, weights and margins at every row", async () => {
      const golden = readGolden(fixture);
      const ckpt = await openCheckpoint(fixtureDir(fixture));
      const c = ckpt.config;
      try {
        let rowsChecked = 0;
        for (const prompt of golden.prompts) {
          for (const gl of prompt.routing.layers) {
            const gate = await ckpt.readFloat32(`model.layers.${gl.layer}.mlp.gate.weight`);
            const bias = await ckpt.readFloat32(`model.layers.${gl.layer}.mlp.gate.e_score_correction_bias`);
            const scores = routerScores(gl.gate_input, gate, c.nRoutedExperts, c.hiddenSize);
            const r = routeTokens(scores, bias, {
              nExperts: c.nRoutedExperts,
              topK: c.numExpertsPerTok,
              nGroup: c.nGroup,
              topkGroup: c.topkGroup,
              routedScalingFactor: c.routedScalingFactor,
            });
            const K = c.numExpertsPerTok;
            const KG = c.topkGroup;
            gl.experts.forEach((experts, row) => {
              const where = `${prompt.name} layer ${gl.layer} row ${row}`;
              assert.deepEqual(Array.from(r.experts.subarray(row * K, (row + 1) * K)), experts, where);
              assert.deepEqual(
                Array.from(r.groups.subarray(row * KG, (row + 1) * KG)),
                gl.groups[row],
                where,
              );
              const w = r.weights.subarray(row * K, (row + 1) * K);
              gl.weights[row]!.forEach((gw, j) =>
                assert.ok(Math.abs(gw - (w[j] as number)) <= 1e-5, `${where} weight ${j}`),
              );
              assert.ok(
                Math.abs((r.expertMargin[row] as number) - gl.expert_margin[row]!) <= 1e-5,
                `${where} expert margin`,
              );
              assert.ok(
                Math.abs((r.groupMargin[row] as number) - gl.group_margin[row]!) <= 1e-5,
                `${where} group margin`,
              );
              rowsChecked++;
            });
          }
        }
        assert.ok(rowsChecked > 50);
      } finally {
        await ckpt.close();
      }
    });
  });
}

describe("routeTokens", () => {
  it("falls back to max-per-group scores without a bias and keeps weights summing to the scale", () => {
    // 4 experts, 2 groups of 2, keep 1 group, top-2
    const scores = Float32Array.from([3, -3, 2, 2], (v) => 1 / (1 + Math.exp(-v)));
    const r = routeTokens(scores, null, {
      nExperts: 4,
      topK: 2,
      nGroup: 2,
      topkGroup: 1,
      routedScalingFactor: 2,
    });
    // group 0 max = sigmoid(3) > group 1 max = sigmoid(2)
    assert.deepEqual(Array.from(r.groups), [0]);
    assert.deepEqual(Array.from(r.experts), [0, 1]);
    assert.ok(Math.abs((r.weights[0] as number) + (r.weights[1] as number) - 2) < 1e-6);
  });

  it("rejects inconsistent group settings", () => {
    assert.throws(
      () =>
        routeTokens(new Float32Array(6), null, {
          nExperts: 6,
          topK: 2,
          nGroup: 4,
          topkGroup: 2,
          routedScalingFactor: 1,
        }),
      /inconsistent/,
    );
  });
});
