/**
 * The forward pass as the engine will drive it: chunked prefill, mixed prefill/decode steps
 * with several sequences, and teacher forcing must give the same logits as one sequence alone.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { openCheckpoint } from "../src/checkpoint/checkpoint.ts";
import { loadModel, type DeepSeekModel } from "../src/runtime/deepseek-model.ts";
import {
  loadRoutedExperts,
  moeLayers,
  type RoutedExpertsBackend,
} from "../src/runtime/routed-experts-backend.ts";
import { inspectPrompts } from "../src/inspect/inspect.ts";
import { fixtureDir, readGolden } from "./fixtures.ts";

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

describe("DeepSeekModel.forward batching on tiny-v3", () => {
  let model: DeepSeekModel;
  const golden = readGolden("tiny-v3");
  const [p5, p17, p40] = golden.prompts.map((p) => Int32Array.from(p.tokens)) as [
    Int32Array,
    Int32Array,
    Int32Array,
  ];
  const V = 512;
  before(async () => {
    model = await loadModel(fixtureDir("tiny-v3"), { threads: 1 });
  });
  after(() => model.release());

  /** All-position logits of one sequence prefilled alone. */
  async function alone(tokens: Int32Array): Promise<Float32Array> {
    const kv = model.createKvStore();
    kv.reserve(0, tokens.length);
    return (await model.forward({ sequences: [{ seq: 0, tokens, start: 0, logits: "all" }] }, kv)).logits;
  }

  it("chunked prefill and a mixed step of prefill chunks and decodes match sequences run alone", async () => {
    const kv = model.createKvStore();
    for (const [seq, n] of [
      [1, 40],
      [2, 17],
      [3, 6],
      [4, 3],
    ] as const)
      kv.reserve(seq, n);
    // step 1: seq 1 prefills 25 tokens, seq 2 its first 16, seq 3 its first 5, seq 4 its first 2
    const s1 = await model.forward(
      {
        sequences: [
          { seq: 1, tokens: p40.subarray(0, 25), start: 0, logits: "none" },
          { seq: 2, tokens: p17.subarray(0, 16), start: 0, logits: "last" },
          { seq: 3, tokens: p5, start: 0, logits: "last" },
          { seq: 4, tokens: p17.subarray(0, 2), start: 0, logits: "all" },
        ],
      },
      kv,
    );
    assert.deepEqual(Array.from(s1.logitOffsets), [0, 0, 1, 2, 4]);
    // step 2: decode seq 2, prefill the rest of seq 1, decode seq 3 and seq 4 (decode rows not contiguous)
    const next3 = golden.prompts[0]?.greedy.generated[0] as number;
    const s2 = await model.forward(
      {
        sequences: [
          { seq: 2, tokens: p17.subarray(16, 17), start: 16, logits: "last" },
          { seq: 1, tokens: p40.subarray(25), start: 25, logits: "all" },
          { seq: 3, tokens: Int32Array.of(next3), start: 5, logits: "last" },
          { seq: 4, tokens: p17.subarray(2, 3), start: 2, logits: "last" },
        ],
      },
      kv,
      { capture: "all" },
    );
    assert.deepEqual(Array.from(s2.logitOffsets), [0, 1, 16, 17, 18]);

    const ref40 = await alone(p40);
    const ref17 = await alone(p17);
    const ref5 = await alone(Int32Array.of(...p5, next3));
    const ref3 = await alone(p17.subarray(0, 3));
    const tol = 1e-4;
    assert.ok(maxDiff(s1.logits.subarray(0, V), ref17.subarray(15 * V, 16 * V)) < tol);
    assert.ok(maxDiff(s1.logits.subarray(V, 2 * V), ref5.subarray(4 * V, 5 * V)) < tol);
    assert.ok(maxDiff(s1.logits.subarray(2 * V, 4 * V), ref3.subarray(0, 2 * V)) < tol);
    assert.ok(maxDiff(s2.logits.subarray(0, V), ref17.subarray(16 * V, 17 * V)) < tol);
    assert.ok(maxDiff(s2.logits.subarray(V, 16 * V), ref40.subarray(25 * V, 40 * V)) < tol);
    assert.ok(maxDiff(s2.logits.subarray(16 * V, 17 * V), ref5.subarray(5 * V, 6 * V)) < tol);
    assert.ok(maxDiff(s2.logits.subarray(17 * V, 18 * V), ref3.subarray(2 * V, 3 * V)) < tol);

    // captures come back in batch order although decodes and the prefill chunk ran as separate groups
    const kvAlone = model.createKvStore();
    kvAlone.reserve(0, 40);
    const one = await model.forward(
      { sequences: [{ seq: 0, tokens: p40, start: 0, logits: "none" }] },
      kvAlone,
      { capture: "all" },
    );
    const [a, b] = [s2.capture, one.capture];
    assert.ok(a !== undefined && b !== undefined);
    assert.equal(a.hidden.length, 5);
    const H = 64;
    assert.ok(
      maxDiff(
        (a.hidden[4] as Float32Array).subarray(H, 16 * H),
        (b.hidden[4] as Float32Array).subarray(25 * H, 40 * H),
      ) < 1e-4,
    );
    a.moe.forEach((m, i) => {
      const ref = b.moe[i];
      assert.equal(m.layer, ref?.layer);
      assert.deepEqual(
        Array.from(m.routing.experts.subarray(8, 16 * 8)),
        Array.from(ref?.routing.experts.subarray(25 * 8, 40 * 8) ?? []),
      );
    });
  });

  it("teacher forcing feeds the given tokens, and decode through the cache matches a full prefill", async () => {
    const forced = [7, 300, 42];
    const [report] = (
      await inspectPrompts(
        model,
        [{ name: "p", tokens: Array.from(p5), maxNewTokens: 4, forcedTokens: forced }],
        { teacherForce: true },
      )
    ).prompts;
    assert.ok(report !== undefined);
    assert.deepEqual(report.greedy.fed_tokens, forced);
    const ref = await alone(Int32Array.of(...p5, ...forced));
    report.greedy.steps.forEach((step, k) => {
      const row = ref.subarray((4 + k) * V, (5 + k) * V);
      assert.ok(maxDiff(Float32Array.from(step.logits), row) < 1e-4, `step ${k}`);
    });
    assert.equal(report.routing.num_positions, 5 + 3);
    assert.equal(report.routing.layers[0]?.experts.length, 8);
  });

  it("runs with routed experts split over two slices behind a RoutedExpertsBackend", async () => {
    const ckpt = await openCheckpoint(fixtureDir("tiny-v3"));
    const opts = { executionProvider: "cpu", threads: 1 };
    const half = (parity: number) =>
      new Map(moeLayers(ckpt).map((l) => [l, Array.from({ length: 128 }, (_, i) => 2 * i + parity)]));
    const [even, odd] = [
      await loadRoutedExperts(ckpt, half(0), opts),
      await loadRoutedExperts(ckpt, half(1), opts),
    ];
    let calls = 0;
    // what a dispatcher does: every worker gets all rows, keeps its own slots; partial sums add up
    const twoWorkers: RoutedExpertsBackend = {
      async run(layer, rows, experts, weights) {
        calls++;
        const [a, b] = await Promise.all([
          even.run(layer, rows, experts, weights),
          odd.run(layer, rows, experts, weights),
        ]);
        return a.map((v, i) => v + (b[i] as number));
      },
    };
    const split = await loadModel(ckpt, { threads: 1, routedExperts: twoWorkers });
    try {
      const kv = split.createKvStore();
      kv.reserve(0, p17.length);
      const logits = (
        await split.forward({ sequences: [{ seq: 0, tokens: p17, start: 0, logits: "all" }] }, kv)
      ).logits;
      assert.equal(calls, 3);
      assert.ok(maxDiff(logits, await alone(p17)) < 1e-4);
    } finally {
      await split.release();
      await even.release();
      await odd.release();
      await ckpt.close();
    }
    await assert.rejects(
      loadModel(fixtureDir("tiny-v3"), { routedExperts: twoWorkers, experts: "all" }),
      /not both/,
    );
  });

  it("rejects bad input with clear errors", async () => {
    const kv = model.createKvStore();
    kv.reserve(0, 4);
    await assert.rejects(
      model.forward({ sequences: [{ seq: 0, tokens: Int32Array.of(512), start: 0, logits: "last" }] }, kv),
      /outside the vocabulary/,
    );
    await assert.rejects(
      model.forward(
        {
          sequences: [
            { seq: 0, tokens: Int32Array.of(1), start: 0, logits: "last" },
            { seq: 0, tokens: Int32Array.of(1), start: 1, logits: "last" },
          ],
        },
        kv,
      ),
      /twice/,
    );
    await assert.rejects(
      inspectPrompts(model, [{ name: "p", tokens: [1, 2], maxNewTokens: 3 }], { teacherForce: true }),
      /forced tokens/,
    );
  });
});
