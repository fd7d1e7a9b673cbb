import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { openCheckpoint } from "../src/checkpoint/checkpoint.ts";
import type { ModelConfig } from "../src/config/model-config.ts";
import { ropeParams, RopeTables } from "../src/runtime/rope.ts";
import { FIXTURE_NAMES, fixtureDir, readGolden } from "./fixtures.ts";

describe("ropeParams", () => {
  for (const fixture of FIXTURE_NAMES) {
    it(`reproduces ${fixture}'s YaRN frequencies, correction range and softmax scale`, async () => {
      const ckpt = await openCheckpoint(fixtureDir(fixture));
      const { derived } = readGolden(fixture);
      const r = ropeParams(ckpt.config);
      await ckpt.close();
      assert.deepEqual(Array.from(r.invFreq), derived.rope_inv_freq.map(Math.fround));
      assert.deepEqual(r.correctionRange, derived.yarn_correction_range);
      assert.ok(Math.abs(r.softmaxScale - derived.softmax_scale) < 1e-12);
    });
  }

  it("plain RoPE without rope_scaling", () => {
    const config = {
      qkRopeHeadDim: 4,
      qkNopeHeadDim: 12,
      ropeTheta: 10000,
      ropeScaling: null,
    } as unknown as ModelConfig;
    const r = ropeParams(config);
    assert.deepEqual(Array.from(r.invFreq), [1, Math.fround(0.01)]);
    assert.equal(r.softmaxScale, 0.25);
    const t = new RopeTables(r);
    const cos = new Float32Array(8);
    const sin = new Float32Array(8);
    t.gatherInterleaved([0, 300], cos, sin);
    assert.deepEqual(Array.from(cos.subarray(0, 4)), [1, 1, 1, 1]);
    // position 300: pair 0 angle 300, pair 1 angle 3; sin is (-s, +s) per pair
    assert.ok(Math.abs((cos[4] as number) - Math.cos(300)) < 1e-6 && cos[4] === cos[5]);
    assert.ok(Math.abs((sin[5] as number) - Math.sin(300)) < 1e-6 && sin[4] === -(sin[5] as number));
    assert.ok(Math.abs((sin[7] as number) - Math.sin(3)) < 1e-6 && sin[6] === -(sin[7] as number));
  });
});
