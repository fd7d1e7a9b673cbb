import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  loadModel,
  type DeepSeekModel,
  type ForwardBatch,
  type ForwardResult,
  type LatentKvStore,
} from "@expertmesh/model";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { EngineCore, type EngineCoreOptions, type StepStats } from "../src/engine-core.ts";
import type { EngineModel } from "../src/model-runner.ts";
import { makePrompt, TINY_V3_DIR } from "./fixtures.ts";

interface Spec {
  id: string;
  prompt: number[];
  maxTokens: number;
}

const SPECS: Spec[] = [3, 9, 17, 30, 41, 5, 22, 1, 12, 26].map((len, i) => ({
  id: `r${i}`,
  prompt: makePrompt(100 + i, len),
  maxTokens: 4 + (i % 5) * 2,
}));

/** Steps until done, collecting every request's tokens and finish reason, and each step's stats. */
async function drain(
  core: EngineCore,
  tokens: Map<string, number[]>,
  reasons: Map<string, string>,
  stats: StepStats[],
): Promise<void> {
  while (core.hasUnfinishedRequests()) await stepOnce(core, tokens, reasons, stats);
}

async function stepOnce(
  core: EngineCore,
  tokens: Map<string, number[]>,
  reasons: Map<string, string>,
  stats: StepStats[],
): Promise<void> {
  const out = await core.step();
  if (out.stats !== null) stats.push(out.stats);
  for (const o of out.outputs) {
    tokens.set(o.requestId, [...(tokens.get(o.requestId) ?? []), ...o.newTokenIds]);
    if (o.finishReason !== null) reasons.set(o.requestId, o.finishReason);
  }
}

function add(core: EngineCore, spec: Spec): void {
  core.addRequest({
    requestId: spec.id,
    promptTokenIds: spec.prompt,
    sampling: { temperature: 0, maxTokens: spec.maxTokens },
  });
}

describe("EngineCore on tiny-v3", () => {
  let model: DeepSeekModel;
  /** Greedy tokens of each request run alone. */
  const alone = new Map<string, number[]>();

  before(async () => {
    model = await loadModel(TINY_V3_DIR, { threads: 1 });
    for (const spec of SPECS) {
      const core = new EngineCore(model, { numKvBlocks: 64, blockSize: 4 });
      add(core, spec);
      const tokens = new Map<string, number[]>();
      await drain(core, tokens, new Map(), []);
      alone.set(spec.id, tokens.get(spec.id)!);
    }
  });

  after(async () => {
    await model.release();
  });

  it("reproduces the golden greedy tokens of the fixture prompts when batched together", async () => {
    const { readFile } = await import("node:fs/promises");
    const golden = JSON.parse(await readFile(`${TINY_V3_DIR}/golden.json`, "utf8")) as {
      prompts: Array<{ name: string; tokens: number[]; greedy: { generated: number[] } }>;
    };
    const core = new EngineCore(model, { numKvBlocks: 64, blockSize: 4, maxNumBatchedTokens: 32 });
    for (const p of golden.prompts) {
      core.addRequest({
        requestId: p.name,
        promptTokenIds: p.tokens,
        sampling: { temperature: 0, maxTokens: p.greedy.generated.length, ignoreEos: true },
      });
    }
    const tokens = new Map<string, number[]>();
    await drain(core, tokens, new Map(), []);
    for (const p of golden.prompts) assert.deepEqual(tokens.get(p.name), p.greedy.generated, p.name);
  });

  it("batches staggered requests (prefill mixed with decode, preemption) with the same greedy tokens as alone", async () => {
    // Small pool and budget: chunked prefills, several sequences per step, and preemption.
    const options: EngineCoreOptions = {
      numKvBlocks: 20,
      blockSize: 4,
      maxNumBatchedTokens: 24,
      maxNumSeqs: 6,
    };
    const core = new EngineCore(model, options);
    const tokens = new Map<string, number[]>();
    const reasons = new Map<string, string>();
    const stats: StepStats[] = [];
    const arrivals = [SPECS.slice(0, 3), SPECS.slice(3, 6), SPECS.slice(6, 8), SPECS.slice(8)];
    for (const wave of arrivals) {
      for (const spec of wave) add(core, spec);
      for (let i = 0; i < 2; i++) await stepOnce(core, tokens, reasons, stats);
    }
    // A request cancelled while waiting, one cancelled mid-decode.
    core.addRequest({
      requestId: "cancel-waiting",
      promptTokenIds: makePrompt(7, 30),
      sampling: { temperature: 0, maxTokens: 8 },
    });
    core.addRequest({
      requestId: "cancel-running",
      promptTokenIds: makePrompt(8, 6),
      sampling: { temperature: 0, maxTokens: 50 },
    });
    assert.equal(core.abort("cancel-waiting"), true);
    while (core.hasUnfinishedRequests()) {
      await stepOnce(core, tokens, reasons, stats);
      if ((tokens.get("cancel-running")?.length ?? 0) >= 2 && !reasons.has("cancel-running"))
        core.abort("cancel-running");
    }

    for (const spec of SPECS)
      assert.deepEqual(tokens.get(spec.id), alone.get(spec.id), `${spec.id} batched vs alone`);
    assert.equal(reasons.get("cancel-waiting"), "abort");
    assert.equal(reasons.get("cancel-running"), "abort");
    assert.equal(tokens.get("cancel-waiting")?.length ?? 0, 0);
    // Every block is back in the pool.
    assert.equal(core.pool.usedBlocks, 0);
    assert.equal(core.pool.freeBlocks, core.pool.numBlocks);
    assert.equal(core.pool.numSequences, 0);

    // The batches really mixed: several sequences, prefill and decode in one step, within budgets.
    const mixed = stats.filter((s) => s.numDecodeSeqs > 0 && s.numPrefillSeqs > 0);
    assert.ok(mixed.length >= 3, `steps mixing prefill and decode: ${mixed.length}`);
    assert.ok(
      stats.some((s) => s.numDecodeSeqs + s.numPrefillSeqs >= 4),
      "some step held ≥ 4 sequences",
    );
    assert.ok(
      stats.some(
        (s) => s.composition.some((c) => c.isPrefill && c.numTokens < 20) && s.numScheduledTokens === 24,
      ),
      "a prefill was chunked at the budget",
    );
    assert.ok(
      stats.some((s) => s.preemptedRequestIds.length > 0),
      "the small pool forced a preemption",
    );
    for (const s of stats) {
      assert.ok(s.numScheduledTokens <= 24);
      assert.ok(s.numDecodeSeqs + s.numPrefillSeqs <= 6);
      assert.ok(s.kvUsedBlocks <= 20);
    }
    // Decodes come first in every batch.
    for (const s of stats) {
      const firstPrefill = s.composition.findIndex((c) => c.isPrefill);
      if (firstPrefill >= 0) assert.ok(s.composition.slice(firstPrefill).every((c) => c.isPrefill));
    }
  });

  it("returns logprobs of the chosen token and the top-N with greedy decoding", async () => {
    const core = new EngineCore(model, { numKvBlocks: 16, blockSize: 4 });
    core.addRequest({
      requestId: "lp",
      promptTokenIds: SPECS[2]!.prompt,
      sampling: { temperature: 0, maxTokens: 3, logprobs: 5 },
    });
    const out = (await core.step()).outputs[0]!;
    const lp = out.logprobs![0]!;
    assert.equal(lp.chosen.tokenId, out.newTokenIds[0]);
    assert.equal(lp.chosen.rank, 1);
    assert.equal(lp.top.length, 5);
    assert.equal(lp.top[0]!.tokenId, out.newTokenIds[0]);
    assert.ok(lp.top.every((t) => t.logprob <= 0));
    await drain(core, new Map(), new Map(), []);
  });

  it("fails only the request whose forward fails; the others finish as alone", async () => {
    const POISON = 13;
    // Fault injection around the real model: any batch holding the poison token fails.
    const faulty: EngineModel = {
      config: model.config,
      forward(batch: ForwardBatch, kv: LatentKvStore): Promise<ForwardResult> {
        if (batch.sequences.some((s) => s.tokens.includes(POISON)))
          return Promise.reject(new Error("simulated kernel failure"));
        return model.forward(batch, kv);
      },
    };
    const core = new EngineCore(faulty, { numKvBlocks: 64, blockSize: 4 });
    add(core, SPECS[0]!);
    core.addRequest({
      requestId: "poison",
      promptTokenIds: [5, POISON, 7],
      sampling: { temperature: 0, maxTokens: 4 },
    });
    add(core, SPECS[1]!);
    const tokens = new Map<string, number[]>();
    const reasons = new Map<string, string>();
    const errors = new Map<string, ExpertMeshError>();
    while (core.hasUnfinishedRequests()) {
      const out = await core.step();
      for (const o of out.outputs) {
        tokens.set(o.requestId, [...(tokens.get(o.requestId) ?? []), ...o.newTokenIds]);
        if (o.finishReason !== null) reasons.set(o.requestId, o.finishReason);
        if (o.error !== undefined) errors.set(o.requestId, o.error);
      }
    }
    assert.equal(reasons.get("poison"), "error");
    assert.equal(errors.get("poison")?.code, Code.INTERNAL);
    assert.deepEqual(tokens.get(SPECS[0]!.id), alone.get(SPECS[0]!.id));
    assert.deepEqual(tokens.get(SPECS[1]!.id), alone.get(SPECS[1]!.id));
    assert.equal(core.pool.usedBlocks, 0);
  });

  it("rejects bad requests with clear codes and keeps serving", () => {
    const core = new EngineCore(model, { numKvBlocks: 4, blockSize: 4 });
    const code = (fn: () => void): Code | undefined => {
      try {
        fn();
      } catch (e) {
        return e instanceof ExpertMeshError ? e.code : undefined;
      }
      return Code.OK;
    };
    assert.equal(
      code(() => core.addRequest({ requestId: "a", promptTokenIds: [1, 512] })),
      Code.INVALID_ARGUMENT,
    );
    assert.equal(
      code(() => core.addRequest({ requestId: "a", promptTokenIds: [] })),
      Code.INVALID_ARGUMENT,
    );
    assert.equal(
      code(() => core.addRequest({ requestId: "a", promptTokenIds: [2], sampling: { topP: 2 } })),
      Code.INVALID_ARGUMENT,
    );
    // 16 tokens of cache: prompt 10 + 8 generated needs 17.
    assert.equal(
      code(() =>
        core.addRequest({ requestId: "a", promptTokenIds: makePrompt(1, 10), sampling: { maxTokens: 8 } }),
      ),
      Code.RESOURCE_EXHAUSTED,
    );
    assert.equal(
      code(() =>
        core.addRequest({ requestId: "a", promptTokenIds: makePrompt(1, 10), sampling: { maxTokens: 7 } }),
      ),
      Code.OK,
    );
    assert.equal(
      code(() => core.addRequest({ requestId: "a", promptTokenIds: [2] })),
      Code.ALREADY_EXISTS,
    );
  });
});
