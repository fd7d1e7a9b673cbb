import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { loadModel, type DeepSeekModel } from "@expertmesh/model";
import { EngineCore } from "../src/engine-core.ts";
import { ModelRunner } from "../src/model-runner.ts";
import { makePrompt, TINY_V3_DIR } from "./fixtures.ts";

let model: DeepSeekModel;
before(async () => {
  model = await loadModel(TINY_V3_DIR, { threads: 1 });
});
after(async () => {
  await model.release();
});

async function greedy(
  microBatches: 1 | 2,
  prompts: number[][],
  steps: number,
): Promise<{ tokens: number[][]; forwards: number }> {
  let forwards = 0;
  const counting = {
    config: model.config,
    forward: (...a: Parameters<DeepSeekModel["forward"]>) => (forwards++, model.forward(...a)),
  };
  const core = new EngineCore(counting, { kvCacheBytes: 8 * 2 ** 20, microBatches, maxNumBatchedTokens: 16 });
  const tokens = prompts.map((): number[] => []);
  prompts.forEach((p, i) =>
    core.addRequest({
      requestId: String(i),
      promptTokenIds: p,
      sampling: { temperature: 0, maxTokens: steps, ignoreEos: true },
    }),
  );
  while (core.hasUnfinishedRequests()) {
    for (const o of (await core.step()).outputs) tokens[Number(o.requestId)]!.push(...o.newTokenIds);
  }
  return { tokens, forwards };
}

test("two micro-batches per step (local experts, chunked prefill) give the same greedy tokens", async () => {
  const prompts = [makePrompt(1, 11), makePrompt(2, 3), makePrompt(3, 7), makePrompt(4, 1)];
  const one = await greedy(1, prompts, 5);
  const two = await greedy(2, prompts, 5);
  assert.deepEqual(two.tokens, one.tokens);
  assert.ok(
    two.forwards > one.forwards,
    `${two.forwards} forwards with 2 micro-batches vs ${one.forwards} with 1`,
  );
});

test("microBatches other than 1 or 2 is refused", () => {
  assert.throws(
    () => new ModelRunner(model, model.createKvStore(), { microBatches: 3 as 2 }),
    /microBatches must be 1 or 2/,
  );
});
