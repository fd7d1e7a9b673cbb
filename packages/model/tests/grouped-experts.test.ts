import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  GroupedExperts,
  GroupedExpertsSessions,
  type ExpertWeights,
} from "../src/runtime/grouped-experts.ts";

const H = 24;
const I = 12;
const E = 16;

/** Deterministic pseudo-random floats in [-0.5, 0.5). */
function random(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  });
}

const silu = (v: number): number => v / (1 + Math.exp(-v));

/** Naive float64 reference of Σ_j w_j · down(silu(gate x) · up x). */
function naive(
  rows: Float32Array,
  ids: Int32Array,
  wts: Float32Array,
  experts: ReadonlyMap<number, ExpertWeights>,
): Float64Array {
  const T = rows.length / H;
  const k = ids.length / T;
  const out = new Float64Array(T * H);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < k; j++) {
      const w = experts.get(ids[t * k + j] as number);
      if (w === undefined) continue;
      const a = new Float64Array(I);
      for (let i = 0; i < I; i++) {
        let g = 0;
        let u = 0;
        for (let h = 0; h < H; h++) {
          g += (w.gate[i * H + h] as number) * (rows[t * H + h] as number);
          u += (w.up[i * H + h] as number) * (rows[t * H + h] as number);
        }
        a[i] = silu(g) * u;
      }
      for (let h = 0; h < H; h++) {
        let d = 0;
        for (let i = 0; i < I; i++) d += (w.down[h * I + i] as number) * (a[i] as number);
        out[t * H + h] = (out[t * H + h] as number) + (wts[t * k + j] as number) * d;
      }
    }
  }
  return out;
}

function assertClose(actual: Float32Array, expected: Float64Array, tol: number): void {
  assert.equal(actual.length, expected.length);
  let max = 0;
  for (let i = 0; i < actual.length; i++)
    max = Math.max(max, Math.abs((actual[i] as number) - (expected[i] as number)));
  assert.ok(max <= tol, `max abs diff ${max}`);
}

const allExperts = new Map<number, ExpertWeights>(
  Array.from({ length: E }, (_, e) => [
    e,
    { gate: random(I * H, 3 * e + 1), up: random(I * H, 3 * e + 2), down: random(H * I, 3 * e + 3) },
  ]),
);

describe("GroupedExperts", () => {
  const sessions = new GroupedExpertsSessions(H, I, { executionProvider: "cpu", threads: 1 });
  after(() => sessions.release());

  const T = 9;
  const k = 4;
  const rows = random(T * H, 99);
  const ids = new Int32Array(T * k);
  const wts = random(T * k, 7).map((v) => v + 1);
  // rows pick distinct experts; row 8 uses only experts 12..15
  for (let t = 0; t < T; t++)
    for (let j = 0; j < k; j++) ids[t * k + j] = t === 8 ? 12 + j : (t * 5 + j * 3) % 12;

  it("matches a naive reference when holding every expert", async () => {
    const g = await GroupedExperts.fromWeights(sessions, allExperts);
    assertClose(await g.run(rows, ids, wts), naive(rows, ids, wts, allExperts), 1e-5);
  });

  it("skips experts it does not hold and leaves rows with none held at zero", async () => {
    const slice = new Map([...allExperts].filter(([e]) => e % 2 === 0 && e < 12));
    const g = await GroupedExperts.fromWeights(sessions, slice);
    const out = await g.run(rows, ids, wts);
    assertClose(out, naive(rows, ids, wts, slice), 1e-5);
    assert.ok(out.subarray(8 * H, 9 * H).every((v) => v === 0));
    assert.ok(out.subarray(0, H).some((v) => v !== 0));
  });

  it("returns zeros when no row's experts are held", async () => {
    const g = await GroupedExperts.fromWeights(
      sessions,
      new Map([[15, allExperts.get(15) as ExpertWeights]]),
    );
    const only = Int32Array.from({ length: T * k }, () => 3);
    assert.ok((await g.run(rows, only, wts)).every((v) => v === 0));
  });

  it("handles a single held expert, repeated ids and zero weights; rejects negative weights", async () => {
    const one = new Map([[5, allExperts.get(5) as ExpertWeights]]);
    const g = await GroupedExperts.fromWeights(sessions, one);
    assertClose(await g.run(rows, ids, wts), naive(rows, ids, wts, one), 1e-5);
    const rep = Int32Array.from({ length: T * k }, (_, i) => (i % k < 2 ? 5 : 1));
    const w = Float32Array.from({ length: T * k }, (_, i) => (i % k === 1 && i < k ? 0 : 0.25 + (i % 3)));
    assertClose(await g.run(rows, rep, w), naive(rows, rep, w, one), 1e-5);
    await assert.rejects(
      g.run(
        rows,
        ids,
        wts.map((v) => -v),
      ),
      /not ≥ 0/,
    );
  });

  it("accepts rows that are a view into a larger buffer", async () => {
    const big = new Float32Array(H + T * H);
    big.set(rows, H);
    const g = await GroupedExperts.fromWeights(sessions, allExperts);
    assertClose(await g.run(big.subarray(H), ids, wts), naive(rows, ids, wts, allExperts), 1e-5);
  });

  it("rejects mismatched shapes", async () => {
    const g = await GroupedExperts.fromWeights(sessions, allExperts);
    await assert.rejects(g.run(rows.subarray(1), ids, wts), /not a multiple/);
    await assert.rejects(g.run(rows, ids.subarray(1), wts), /expert ids/);
  });
});
