/**
 * The serve loop over a real EngineCore on tiny-v3 (routed experts local: the loop's behaviour
 * is under test, not dispatch): per-stream step reports, aborts, deadlines, bad input, stream
 * cancellation and drain — and every KV block comes back.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { EngineCore } from "@expertmesh/engine";
import { loadModel } from "@expertmesh/model";
import type { DeepSeekModel } from "@expertmesh/model";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { waitUntil } from "@expertmesh/shared/testing";
import { ServeLoop } from "../src/core/serve-loop.ts";
import type { SequenceRequest, SessionOutput } from "../src/core/session-output.ts";

const TINY_V3 = fileURLToPath(new URL("../../../../shared/fixtures/tiny-v3", import.meta.url));

/** Records what a session's listener got. */
function recorder() {
  const outputs: SessionOutput[] = [];
  const state = { ended: false, failed: undefined as ExpertMeshError | undefined };
  return {
    outputs,
    state,
    listener: {
      output: (o: SessionOutput) => outputs.push(o),
      end: () => (state.ended = true),
      fail: (e: ExpertMeshError) => (state.failed = e),
    },
    tokensOf: (seq: number) =>
      outputs.flatMap((o) => o.tokens.filter((t) => t.sequenceId === seq).map((t) => t.tokenId)),
    finishOf: (seq: number) => outputs.flatMap((o) => o.finishes.filter((f) => f.sequenceId === seq))[0],
  };
}

function greedy(
  sequenceId: number,
  prompt: number[],
  maxTokens: number,
  extra: Partial<SequenceRequest> = {},
): SequenceRequest {
  return {
    sequenceId,
    requestId: `r${sequenceId}`,
    promptTokenIds: prompt,
    sampling: { temperature: 0, maxTokens, ignoreEos: true },
    logprobs: false,
    topLogprobs: 0,
    timeoutMs: 0,
    ...extra,
  };
}

const PROMPTS = [
  [68, 0, 408, 255, 511],
  [89, 218, 113, 44, 390, 238, 387, 510, 394, 387, 505],
  [5, 6, 7],
];

describe("ServeLoop on tiny-v3", () => {
  let model: DeepSeekModel;
  const alone: number[][] = [];

  before(async () => {
    model = await loadModel(TINY_V3, { threads: 1 });
    // Reference: each prompt alone in its own engine.
    for (const p of PROMPTS) {
      const loop = new ServeLoop(new EngineCore(model, { numKvBlocks: 32, blockSize: 4 }));
      const r = recorder();
      const s = loop.openSession(r.listener);
      s.add(greedy(0, p, 6));
      s.endCommands();
      await waitUntil(() => r.state.ended, { timeoutMs: 30_000 });
      alone.push(r.tokensOf(0));
    }
  });
  after(async () => {
    await model?.release();
  });

  it("serves two streams at once: one report per step per stream, the same greedy tokens as alone", async () => {
    const core = new EngineCore(model, { numKvBlocks: 48, blockSize: 4 });
    let steps = 0;
    const loop = new ServeLoop(core, { onStep: (stats) => (steps += stats === null ? 0 : 1) });
    const a = recorder();
    const b = recorder();
    const sa = loop.openSession(a.listener);
    const sb = loop.openSession(b.listener);
    sa.add(greedy(1, PROMPTS[0]!, 6, { logprobs: true, topLogprobs: 3 }));
    sa.add(greedy(2, PROMPTS[1]!, 6));
    sb.add(greedy(1, PROMPTS[2]!, 6)); // the same sequence id on another stream is another sequence
    sa.endCommands();
    sb.endCommands();
    await waitUntil(() => a.state.ended && b.state.ended, { timeoutMs: 30_000 });

    assert.deepEqual(a.tokensOf(1), alone[0]);
    assert.deepEqual(a.tokensOf(2), alone[1]);
    assert.deepEqual(b.tokensOf(1), alone[2]);
    // One report per step at most, per stream.
    assert.ok(a.outputs.length <= steps && b.outputs.length <= steps);
    for (const o of a.outputs) assert.ok(new Set(o.tokens.map((t) => t.sequenceId)).size === o.tokens.length);
    // Logprobs only where asked: sequence 1 has its logprob and 3 alternatives, sequence 2 neither.
    const t1 = a.outputs.flatMap((o) => o.tokens).filter((t) => t.sequenceId === 1);
    for (const t of t1) {
      assert.equal(typeof t.logprob, "number");
      assert.equal(t.top.length, 3);
      assert.equal(t.top[0]!.tokenId, t.tokenId, "greedy picks the most likely token");
    }
    for (const t of a.outputs.flatMap((o) => o.tokens).filter((t) => t.sequenceId === 2)) {
      assert.equal(t.logprob, undefined);
      assert.equal(t.top.length, 0);
    }
    const f = a.finishOf(1)!;
    assert.equal(f.reason, "length");
    assert.deepEqual([f.promptTokens, f.completionTokens], [PROMPTS[0]!.length, 6]);
    assert.equal(core.pool.usedBlocks, 0);
    assert.equal(loop.numSessions, 0);
  });

  it("abort → cancelled, deadline → DEADLINE_EXCEEDED, bad input → error finish; the others go on", async () => {
    const core = new EngineCore(model, { numKvBlocks: 256, blockSize: 4 });
    const loop = new ServeLoop(core);
    const r = recorder();
    const s = loop.openSession(r.listener);
    s.add(greedy(1, PROMPTS[0]!, 200));
    s.add(greedy(2, PROMPTS[1]!, 200, { timeoutMs: 150 }));
    s.add(greedy(3, [9999], 4)); // not in the vocabulary
    s.add(greedy(4, PROMPTS[2]!, 6));
    s.add(greedy(4, PROMPTS[2]!, 6)); // duplicate of a live id
    await waitUntil(() => r.tokensOf(1).length >= 2, { timeoutMs: 30_000 });
    s.abort([1, 77]); // 77 is unknown: ignored
    s.endCommands();
    await waitUntil(() => r.state.ended, { timeoutMs: 30_000 });

    assert.equal(r.finishOf(1)?.reason, "cancelled");
    const expired = r.finishOf(2)!;
    assert.equal(expired.reason, "error");
    assert.equal(expired.error?.code, Code.DEADLINE_EXCEEDED);
    const bad = r.outputs.flatMap((o) => o.finishes).filter((f) => f.sequenceId === 3);
    assert.equal(bad.length, 1);
    assert.equal(bad[0]!.error?.code, Code.INVALID_ARGUMENT);
    const fours = r.outputs.flatMap((o) => o.finishes).filter((f) => f.sequenceId === 4);
    assert.deepEqual(
      fours.map((f) => f.error?.code ?? f.reason),
      [Code.ALREADY_EXISTS, "length"],
    );
    assert.deepEqual(r.tokensOf(4), alone[2]);
    assert.equal(core.pool.usedBlocks, 0);
  });

  it("a cancelled stream frees its sequences; a draining loop refuses new ones; close fails open streams", async () => {
    const core = new EngineCore(model, { numKvBlocks: 256, blockSize: 4 });
    const loop = new ServeLoop(core);
    const gone = recorder();
    const sg = loop.openSession(gone.listener);
    sg.add(greedy(1, PROMPTS[1]!, 500));
    await waitUntil(() => gone.tokensOf(1).length >= 1, { timeoutMs: 30_000 });
    sg.cancel();
    await loop.drained();
    assert.equal(core.pool.usedBlocks, 0);
    assert.equal(core.hasUnfinishedRequests(), false);

    const open = recorder();
    const so = loop.openSession(open.listener);
    so.add(greedy(1, PROMPTS[0]!, 4));
    loop.startDrain();
    so.add(greedy(2, PROMPTS[0]!, 4));
    assert.equal(open.finishOf(2)?.error?.code, Code.UNAVAILABLE);
    await loop.drained();
    assert.equal(open.finishOf(1)?.reason, "length");
    await loop.close(new ExpertMeshError(Code.UNAVAILABLE, "stopping"));
    assert.equal(open.state.failed?.code, Code.UNAVAILABLE);
    assert.equal(core.pool.usedBlocks, 0);
  });
});
