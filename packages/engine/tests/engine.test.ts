import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { after, before, describe, it } from "node:test";
import { loadModel, type DeepSeekModel } from "@expertmesh/model";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { EngineCore } from "../src/engine-core.ts";
import { Engine } from "../src/engine.ts";
import type { StepStats } from "../src/engine-core.ts";
import { makePrompt, TINY_V3_DIR } from "./fixtures.ts";

async function collect(
  stream: AsyncIterable<{ newTokenIds: number[]; finishReason: string | null }>,
): Promise<{ tokens: number[]; reason: string | null }> {
  const tokens: number[] = [];
  let reason: string | null = null;
  for await (const out of stream) {
    tokens.push(...out.newTokenIds);
    reason = out.finishReason;
  }
  return { tokens, reason };
}

describe("Engine (async loop) on tiny-v3", () => {
  let model: DeepSeekModel;
  before(async () => {
    model = await loadModel(TINY_V3_DIR, { threads: 1 });
  });
  after(async () => {
    await model.release();
  });

  it("streams concurrent requests, cancels by AbortSignal and by break, and frees every block", async () => {
    const steps: StepStats[] = [];
    const core = new EngineCore(model, { numKvBlocks: 48, blockSize: 4, maxNumBatchedTokens: 32 });
    const engine = new Engine(core, { onStep: (s) => steps.push(s) });
    const prompts = [4, 19, 33, 8].map((len, i) => makePrompt(200 + i, len));

    // Reference: each alone through the same engine.
    const alone: number[][] = [];
    for (const p of prompts)
      alone.push(
        (await collect(engine.generate({ promptTokenIds: p, sampling: { temperature: 0, maxTokens: 6 } })))
          .tokens,
      );

    const controller = new AbortController();
    const cancelled = engine.generate(
      { requestId: "sig", promptTokenIds: makePrompt(9, 12), sampling: { temperature: 0, maxTokens: 40 } },
      { signal: controller.signal },
    );
    let seenBeforeCancel = 0;
    const cancelledRun = assert.rejects(
      async () => {
        for await (const out of cancelled) {
          seenBeforeCancel += out.newTokenIds.length;
          if (seenBeforeCancel === 2) controller.abort();
        }
      },
      (e: unknown) => e instanceof ExpertMeshError && e.code === Code.CANCELLED,
    );
    const broken = (async () => {
      let n = 0;
      for await (const out of engine.generate({
        promptTokenIds: makePrompt(10, 7),
        sampling: { temperature: 0, maxTokens: 40 },
      })) {
        n += out.newTokenIds.length;
        if (n === 3) break; // consumer stops reading: the request is aborted
      }
      return n;
    })();
    const together = await Promise.all(
      prompts.map((p) =>
        collect(engine.generate({ promptTokenIds: p, sampling: { temperature: 0, maxTokens: 6 } })),
      ),
    );

    await cancelledRun;
    assert.equal(seenBeforeCancel, 2);
    assert.equal(await broken, 3);
    together.forEach((r, i) => {
      assert.deepEqual(r.tokens, alone[i], `prompt ${i}`);
      assert.equal(r.reason, "length");
    });
    await engine.close();
    assert.equal(core.hasUnfinishedRequests(), false);
    assert.equal(core.pool.usedBlocks, 0);
    assert.ok(
      steps.some((s) => s.numDecodeSeqs + s.numPrefillSeqs >= 4),
      "concurrent requests shared steps",
    );
  });

  it("rejects bad input synchronously and server-side abort ends the stream with 'abort'", async () => {
    const core = new EngineCore(model, { numKvBlocks: 16, blockSize: 4 });
    const engine = new Engine(core);
    assert.throws(
      () => engine.generate({ promptTokenIds: [600] }),
      (e: unknown) => e instanceof ExpertMeshError && e.code === Code.INVALID_ARGUMENT,
    );
    const pre = new AbortController();
    pre.abort();
    assert.throws(
      () => engine.generate({ promptTokenIds: [5] }, { signal: pre.signal }),
      (e: unknown) => e instanceof ExpertMeshError && e.code === Code.CANCELLED,
    );
    const stream = engine.generate({
      requestId: "x",
      promptTokenIds: makePrompt(3, 5),
      sampling: { temperature: 0, maxTokens: 30 },
    });
    const first = await stream.next();
    assert.equal(first.done, false);
    assert.equal(engine.abort("x"), true);
    const rest = await collect(stream);
    assert.equal(rest.reason, "abort");
    // A request that ends normally lets go of its AbortSignal.
    const kept = new AbortController();
    const done = await collect(
      engine.generate(
        { promptTokenIds: [5, 6], sampling: { temperature: 0, maxTokens: 2 } },
        { signal: kept.signal },
      ),
    );
    assert.equal(done.tokens.length, 2);
    assert.equal(getEventListeners(kept.signal, "abort").length, 0);
    await engine.close();
    assert.equal(core.pool.usedBlocks, 0);
  });
});
