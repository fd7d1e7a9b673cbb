/**
 * The whole tiny-v3 model with its routed experts on 4 expert-worker processes over 2 nodes
 * (RemoteRoutedExperts as the model's backend) against the single-process model: logits within
 * 2e-3 with FLOAT32 on the wire, the same greedy tokens with BF16 (design invariant 1).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { RemoteRoutedExperts } from "@expertmesh/dispatch";
import { loadModel } from "@expertmesh/model";
import type { DeepSeekModel } from "@expertmesh/model";
import { WireDtype } from "@expertmesh/proto";
import { TINY_V3, maxAbsDiff, startCluster, tinyPlacement, workersOn } from "./cluster-fixture.ts";
import type { WorkerCluster } from "./cluster-fixture.ts";

interface Prompt {
  name: string;
  tokens: number[];
  max_new_tokens: number;
}
const PROMPTS = (JSON.parse(readFileSync(join(TINY_V3, "prompts.json"), "utf8")) as { prompts: Prompt[] })
  .prompts;

/** Prefill logits at every position, then greedy decoding: [all-position logits, generated tokens]. */
async function generate(
  model: DeepSeekModel,
  prompt: Prompt,
): Promise<{ prefill: Float32Array; tokens: number[] }> {
  const kv = model.createKvStore();
  const tokens = Int32Array.from(prompt.tokens);
  kv.reserve(0, tokens.length + prompt.max_new_tokens);
  const { logits: prefill } = await model.forward(
    { sequences: [{ seq: 0, tokens, start: 0, logits: "all" }] },
    kv,
  );
  const V = model.config.vocabSize;
  const generated: number[] = [];
  let last = prefill.subarray(prefill.length - V);
  for (let step = 0; step < prompt.max_new_tokens; step++) {
    let best = 0;
    for (let v = 1; v < V; v++) if ((last[v] as number) > (last[best] as number)) best = v;
    generated.push(best);
    if (step + 1 === prompt.max_new_tokens) break;
    const r = await model.forward(
      { sequences: [{ seq: 0, tokens: Int32Array.of(best), start: tokens.length + step, logits: "last" }] },
      kv,
    );
    last = r.logits;
  }
  return { prefill, tokens: generated };
}

describe("tiny-v3 with routed experts on 4 expert-workers / 2 nodes vs the single-process model", () => {
  const placement = tinyPlacement(workersOn(4, 2));
  let cluster: WorkerCluster;
  let reference: DeepSeekModel;
  const expected = new Map<string, { prefill: Float32Array; tokens: number[] }>();

  before(async () => {
    let localModel: DeepSeekModel;
    [cluster, localModel] = await Promise.all([startCluster(placement), loadModel(TINY_V3, { threads: 1 })]);
    reference = localModel;
    for (const prompt of PROMPTS) expected.set(prompt.name, await generate(reference, prompt));
  });
  after(async () => {
    await reference?.release();
    await cluster?.stop();
  });

  for (const [mode, dtype] of [
    ["FLOAT32", WireDtype.FLOAT32],
    ["BF16", WireDtype.BF16],
  ] as const) {
    it(`${mode} on the wire: ${mode === "FLOAT32" ? "logits within 2e-3 and " : ""}the same greedy tokens`, async () => {
      let maxNodes = 0;
      const remote = new RemoteRoutedExperts({
        placement,
        addresses: cluster.addresses,
        hiddenSize: 64,
        rowDtype: dtype,
        combineDtype: dtype,
        strictNodeLimit: true,
        onNodesPerRow: (_layer, nodes) => {
          for (const n of nodes) maxNodes = Math.max(maxNodes, n);
        },
      });
      const model = await loadModel(TINY_V3, { threads: 1, routedExperts: remote });
      try {
        for (const prompt of PROMPTS) {
          const want = expected.get(prompt.name)!;
          const got = await generate(model, prompt);
          if (dtype === WireDtype.FLOAT32) {
            const diff = maxAbsDiff(got.prefill, want.prefill);
            assert.ok(diff <= 2e-3, `${prompt.name}: max logit difference ${diff}`);
          }
          assert.deepEqual(got.tokens, want.tokens, `${prompt.name}: greedy tokens`);
        }
        // Every MoE layer of every step went through the workers, and stayed within topk_group nodes.
        assert.ok(remote.stats.runs >= 3 * PROMPTS.length * 8);
        assert.ok(maxNodes >= 1 && maxNodes <= placement.shape.topkGroup);
      } finally {
        await model.release();
        await remote.close();
      }
    });
  }
});
