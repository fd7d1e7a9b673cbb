import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { GraphBuilder, floatAttr } from "./graph-builder.ts";
import { linear, rmsNorm } from "./graph-ops.ts";
import { createSession } from "./ort-session.ts";

const OPTS = { executionProvider: "cpu", threads: 1 };

describe("GraphBuilder", () => {
  it("encodes a graph onnxruntime loads and computes: symbolic dims, initializers, int/float/ints attributes", async () => {
    const b = new GraphBuilder("t");
    const x = b.input("x", "float32", ["T", 3]);
    const w = b.input("w", "float32", [2, 3]);
    const y = linear(b, x, w); // [T, 2]
    const scaled = b.op("Mul", [y, b.constant("float32", [2], [10, 100])]);
    const gemm = b.op("Gemm", [x, w], { transB: 1, alpha: floatAttr(0.5) }, { outputs: ["half"] });
    b.output(b.op("Softmax", [scaled], { axis: -1 }, { outputs: ["p"] }), "float32", ["T", 2]);
    b.output(gemm, "float32", ["T", 2]);
    b.output(b.op("Reshape", [y, b.int64s([-1])], {}, { outputs: ["flat"] }), "float32", ["N"]);
    const s = await createSession(b.toBytes(), OPTS, "test");
    const r = await s.run({
      x: new ort.Tensor("float32", Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]),
      w: new ort.Tensor("float32", Float32Array.from([1, 0, 0, 0, 0, 1]), [2, 3]),
    });
    // y = [[1, 3], [4, 6]]
    assert.deepEqual(Array.from(r.flat?.data as Float32Array), [1, 3, 4, 6]);
    assert.deepEqual(Array.from(r.half?.data as Float32Array), [0.5, 1.5, 2, 3]);
    const p = r.p?.data as Float32Array;
    assert.ok(Math.abs((p[0] as number) - 1 / (1 + Math.exp(290))) < 1e-12 && (p[1] as number) > 0.999999);
    await s.release();
  });

  it("RMSNorm matches the definition", async () => {
    const b = new GraphBuilder("n");
    const x = b.input("x", "float32", ["T", 4]);
    const w = b.input("w", "float32", [4]);
    b.output(b.op("Identity", [rmsNorm(b, x, w, 1e-6)], {}, { outputs: ["y"] }), "float32", ["T", 4]);
    const s = await createSession(b.toBytes(), OPTS, "test");
    const xs = [1, -2, 3, 0.5];
    const r = await s.run({
      x: new ort.Tensor("float32", Float32Array.from(xs), [1, 4]),
      w: new ort.Tensor("float32", Float32Array.from([1, 2, 1, 1]), [4]),
    });
    const rms = Math.sqrt(xs.reduce((a, v) => a + v * v, 0) / 4 + 1e-6);
    const y = Array.from(r.y?.data as Float32Array);
    xs.forEach((v, i) => assert.ok(Math.abs((y[i] as number) - (v / rms) * (i === 1 ? 2 : 1)) < 1e-6));
    await s.release();
  });

  it("rejects unknown values and duplicate names", () => {
    const b = new GraphBuilder("bad");
    b.input("x", "float32", [1]);
    assert.throws(() => b.op("Relu", ["nope"]), /unknown value nope/);
    assert.throws(() => b.input("x", "float32", [1]), /defined twice/);
    assert.throws(() => b.output("missing", "float32", [1]), /unknown output/);
  });
});
