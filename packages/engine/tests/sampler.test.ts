import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { argmax, logSumExp, Sampler } from "../src/sampler.ts";
import { compileSamplingParams, type SamplingOptions } from "../src/sampling-params.ts";
import { SeededRng } from "../src/seeded-rng.ts";

const VOCAB = 64;

/** Deterministic, varied logits: [vocab]. */
function makeLogits(seed: number, scale = 3): Float32Array {
  const rng = new SeededRng(seed);
  const row = new Float32Array(VOCAB);
  for (let i = 0; i < VOCAB; i++) row[i] = (rng.nextFloat() * 2 - 1) * scale;
  return row;
}

function params(options: SamplingOptions) {
  return compileSamplingParams(options, { vocabSize: VOCAB, maxLogprobs: VOCAB });
}

function drawMany(logits: Float32Array, options: SamplingOptions, n: number, seed = 1): number[] {
  const sampler = new Sampler(VOCAB);
  const p = params(options);
  const rng = new SeededRng(seed);
  return Array.from({ length: n }, () => sampler.sample(logits, p, rng).tokenId);
}

function softmax(row: Float32Array, t = 1): number[] {
  const m = Math.max(...row);
  const e = Array.from(row, (l) => Math.exp((l - m) / t));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

describe("Sampler", () => {
  it("greedy is argmax (lowest id on ties)", () => {
    const sampler = new Sampler(VOCAB);
    for (let seed = 0; seed < 20; seed++) {
      const logits = makeLogits(seed);
      const expected = Array.from(logits).indexOf(Math.max(...logits));
      assert.equal(sampler.sample(logits, params({ temperature: 0 }), new SeededRng(seed)).tokenId, expected);
    }
    const tied = new Float32Array(VOCAB).fill(-1);
    tied[9] = 2;
    tied[40] = 2;
    assert.equal(argmax(tied), 9);
  });

  it("seeded sampling is reproducible and different seeds differ", () => {
    const logits = makeLogits(3, 1);
    const a = drawMany(logits, { temperature: 1, seed: 5 }, 50, 5);
    const b = drawMany(logits, { temperature: 1, seed: 5 }, 50, 5);
    const c = drawMany(logits, { temperature: 1, seed: 6 }, 50, 6);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
  });

  it("temperature 1 matches the softmax distribution", () => {
    const logits = makeLogits(11, 1.5);
    const n = 40000;
    const counts = new Array<number>(VOCAB).fill(0);
    for (const t of drawMany(logits, { temperature: 1 }, n)) counts[t]!++;
    const p = softmax(logits);
    for (let i = 0; i < VOCAB; i++) {
      const sd = Math.sqrt((p[i]! * (1 - p[i]!)) / n);
      assert.ok(Math.abs(counts[i]! / n - p[i]!) < 5 * sd + 1e-4, `token ${i}: ${counts[i]! / n} vs ${p[i]}`);
    }
  });

  it("top-k restricts the support to the k most likely tokens", () => {
    const logits = makeLogits(21);
    const order = Array.from(logits.keys()).sort((x, y) => logits[y]! - logits[x]!);
    const seen = new Set(drawMany(logits, { temperature: 2, topK: 5 }, 4000));
    assert.deepEqual(
      [...seen].sort((x, y) => x - y),
      order.slice(0, 5).sort((x, y) => x - y),
    );
  });

  it("top-p keeps the smallest most-likely set with mass ≥ p", () => {
    const logits = makeLogits(31, 2);
    const p = softmax(logits);
    const order = Array.from(logits.keys()).sort((x, y) => p[y]! - p[x]!);
    let mass = 0;
    const nucleus: number[] = [];
    for (const id of order) {
      if (mass >= 0.7) break;
      nucleus.push(id);
      mass += p[id]!;
    }
    assert.ok(nucleus.length > 2 && nucleus.length < VOCAB / 2, `nucleus of ${nucleus.length}`);
    const seen = new Set(drawMany(logits, { temperature: 1, topP: 0.7 }, 8000));
    assert.deepEqual(
      [...seen].sort((x, y) => x - y),
      nucleus.sort((x, y) => x - y),
    );
  });

  it("min-p drops tokens below minP × the top probability", () => {
    const logits = makeLogits(41, 3);
    const p = softmax(logits);
    const top = Math.max(...p);
    const allowed = new Set(Array.from(p.keys()).filter((i) => p[i]! >= 0.2 * top));
    const seen = new Set(drawMany(logits, { temperature: 1, minP: 0.2 }, 8000));
    assert.deepEqual(
      [...seen].sort((x, y) => x - y),
      [...allowed].sort((x, y) => x - y),
    );
  });

  it("logprobs are log-softmax of the unmodified logits: they sum to 1 and match logsumexp", () => {
    const logits = makeLogits(51);
    const sampler = new Sampler(VOCAB);
    const out = sampler.sample(
      logits,
      params({ temperature: 0.3, topK: 3, logprobs: VOCAB }),
      new SeededRng(1),
    );
    const lp = out.logprobs!;
    const lse = logSumExp(logits);
    assert.equal(lp.chosen.tokenId, out.tokenId);
    assert.ok(Math.abs(lp.chosen.logprob - (logits[out.tokenId]! - lse)) < 1e-9);
    const total = lp.top.reduce((s, t) => s + Math.exp(t.logprob), 0);
    assert.ok(Math.abs(total - 1) < 1e-9, `Σ p = ${total}`);
    // Ranked most likely first; the chosen token's rank agrees with its place there.
    for (let i = 1; i < lp.top.length; i++) assert.ok(lp.top[i - 1]!.logprob >= lp.top[i]!.logprob);
    assert.equal(lp.top[lp.chosen.rank - 1]!.tokenId, out.tokenId);
    // Top-N is a prefix of the full ranking.
    const top3 = sampler.sample(logits, params({ temperature: 0, logprobs: 3 }), new SeededRng(1)).logprobs!;
    assert.deepEqual(top3.top, lp.top.slice(0, 3));
    assert.equal(top3.chosen.rank, 1);
  });

  it("rejects bad parameters with INVALID_ARGUMENT", () => {
    for (const bad of [
      { temperature: -1 },
      { topP: 0 },
      { topK: 1.5 },
      { maxTokens: 0 },
      { logprobs: 21 },
      { stopTokenIds: [VOCAB] },
      { seed: 0.5 },
    ]) {
      assert.throws(
        () => compileSamplingParams(bad, { vocabSize: VOCAB }),
        (e: unknown) => e instanceof ExpertMeshError && e.code === Code.INVALID_ARGUMENT,
        JSON.stringify(bad),
      );
    }
  });
});
