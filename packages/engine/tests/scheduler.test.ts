import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ExpertMeshError, Code } from "@expertmesh/shared";
import { EngineRequest } from "../src/engine-request.ts";
import { KvBlockPool } from "../src/kv-block-pool.ts";
import { compileSamplingParams, type SamplingOptions } from "../src/sampling-params.ts";
import type { ModelRunnerOutput, SchedulerOutput } from "../src/scheduler-output.ts";
import { Scheduler, type SchedulerOptions } from "../src/scheduler.ts";
import type { SamplerOutput } from "../src/sampler.ts";

const VOCAB = 100;
const EOS = 99;
let nextSeq = 0;

function request(id: string, promptLength: number, options: SamplingOptions = {}): EngineRequest {
  const prompt = Int32Array.from({ length: promptLength }, (_, i) => (i * 7 + id.length) % 50);
  return new EngineRequest(
    id,
    nextSeq++,
    prompt,
    compileSamplingParams({ temperature: 0, maxTokens: 100, ...options }, { vocabSize: VOCAB }),
  );
}

function setup(numBlocks: number, options: Partial<SchedulerOptions> = {}) {
  const pool = new KvBlockPool({ numLayers: 1, rowSize: 1, blockSize: 4, numBlocks });
  const scheduler = new Scheduler(pool, {
    maxNumBatchedTokens: 64,
    maxNumSeqs: 8,
    maxModelLen: 1000,
    eosTokenId: EOS,
    ...options,
  });
  return { pool, scheduler };
}

/** Every sequence that needed logits gets `token` (a stand-in for the sampler). */
function sampleAll(out: SchedulerOutput, token: number | ((id: string) => number) = 1): ModelRunnerOutput {
  const sampled = new Map<string, SamplerOutput>();
  for (const s of out.scheduled) {
    if (s.needsLogits)
      sampled.set(s.request.requestId, {
        tokenId: typeof token === "number" ? token : token(s.request.requestId),
      });
  }
  return { sampled, failed: new Map() };
}

/** [requestId, start, numTokens, needsLogits] per scheduled sequence, in order. */
function shape(out: SchedulerOutput): Array<[string, number, number, boolean]> {
  return out.scheduled.map((s) => [s.request.requestId, s.start, s.tokenIds.length, s.needsLogits]);
}

describe("Scheduler", () => {
  it("chunks prefills under the token budget and puts decodes first", () => {
    const { scheduler } = setup(64, { maxNumBatchedTokens: 16 });
    const a = request("a", 10);
    scheduler.addRequest(a);
    scheduler.addRequest(request("b", 10));
    scheduler.addRequest(request("c", 10));
    const s1 = scheduler.schedule();
    assert.deepEqual(shape(s1), [
      ["a", 0, 10, true],
      ["b", 0, 6, false],
    ]);
    assert.equal(s1.numScheduledTokens, 16);
    assert.deepEqual(
      Array.from(s1.scheduled[1]!.tokenIds),
      Array.from(scheduler.getRequest("b")!.promptTokenIds.subarray(0, 6)),
    );
    scheduler.updateFromOutput(s1, sampleAll(s1, 42));
    assert.deepEqual(a.outputTokenIds, [42]);

    const s2 = scheduler.schedule();
    // a decodes (its sampled token at position 10), b finishes its prompt, c gets the rest.
    assert.deepEqual(shape(s2), [
      ["a", 10, 1, true],
      ["b", 6, 4, true],
      ["c", 0, 10, true],
    ]);
    assert.equal(s2.numDecodeSeqs, 1);
    assert.equal(s2.numPrefillSeqs, 2);
    assert.deepEqual(Array.from(s2.scheduled[0]!.tokenIds), [42]);
    assert.equal(s2.numScheduledTokens, 15);
  });

  it("never exceeds maxNumSeqs running requests", () => {
    const { scheduler } = setup(64, { maxNumSeqs: 2 });
    for (const id of ["a", "b", "c"]) scheduler.addRequest(request(id, 3));
    const s1 = scheduler.schedule();
    assert.deepEqual(
      s1.scheduled.map((s) => s.request.requestId),
      ["a", "b"],
    );
    assert.equal(scheduler.numWaiting, 1);
    scheduler.updateFromOutput(s1, sampleAll(s1));
    scheduler.finishRequest("a", "abort");
    const s2 = scheduler.schedule();
    assert.deepEqual(shape(s2), [
      ["b", 3, 1, true],
      ["c", 0, 3, true],
    ]);
  });

  it("admits a request only when the pool can hold all its tokens, first come first served", () => {
    const { pool, scheduler } = setup(4); // 16 tokens
    scheduler.addRequest(request("a", 10, { maxTokens: 2 })); // 3 blocks
    scheduler.addRequest(request("b", 8)); // 2 blocks: does not fit next to a
    scheduler.addRequest(request("c", 2)); // would fit, but waits behind b
    const s1 = scheduler.schedule();
    assert.deepEqual(shape(s1), [["a", 0, 10, true]]);
    assert.equal(pool.usedBlocks, 3);
    scheduler.updateFromOutput(s1, sampleAll(s1));
    const s2 = scheduler.schedule();
    assert.deepEqual(shape(s2), [["a", 10, 1, true]]);
    const u2 = scheduler.updateFromOutput(s2, sampleAll(s2));
    assert.deepEqual(
      u2.finished.map((r) => [r.requestId, r.finishReason]),
      [["a", "length"]],
    );
    assert.equal(pool.usedBlocks, 0);
    const s3 = scheduler.schedule();
    assert.deepEqual(shape(s3), [
      ["b", 0, 8, true],
      ["c", 0, 2, true],
    ]);
  });

  it("preempts the newest running request when a decode needs a block, and recomputes it later", () => {
    const { pool, scheduler } = setup(4); // 16 tokens
    const a = request("a", 8, { maxTokens: 3 });
    const b = request("b", 7, { maxTokens: 5 });
    scheduler.addRequest(a);
    scheduler.addRequest(b);
    const s1 = scheduler.schedule();
    assert.deepEqual(shape(s1), [
      ["a", 0, 8, true],
      ["b", 0, 7, true],
    ]);
    assert.equal(pool.freeBlocks, 0);
    scheduler.updateFromOutput(
      s1,
      sampleAll(s1, (id) => (id === "a" ? 11 : 22)),
    );
    // a's 9th token needs a third block: b (newest) is preempted, keeping its generated token.
    const s2 = scheduler.schedule();
    assert.deepEqual(s2.preemptedRequestIds, ["b"]);
    assert.deepEqual(shape(s2), [["a", 8, 1, true]]);
    assert.equal(b.status, "preempted");
    assert.equal(b.numComputedTokens, 0);
    assert.deepEqual(b.outputTokenIds, [22]);
    scheduler.updateFromOutput(s2, sampleAll(s2, 12));
    // b needs 8 tokens = 2 blocks; only 1 is free: it waits.
    const s3 = scheduler.schedule();
    assert.deepEqual(shape(s3), [["a", 9, 1, true]]);
    const u3 = scheduler.updateFromOutput(s3, sampleAll(s3, 13));
    assert.deepEqual(
      u3.finished.map((r) => r.requestId),
      ["a"],
    );
    // Recompute: prompt + the generated token from position 0, then sample the next token.
    const s4 = scheduler.schedule();
    assert.deepEqual(shape(s4), [["b", 0, 8, true]]);
    assert.deepEqual(Array.from(s4.scheduled[0]!.tokenIds), [...Array.from(b.promptTokenIds), 22]);
    assert.equal(s4.scheduled[0]!.isPrefill, true);
    scheduler.updateFromOutput(s4, sampleAll(s4, 23));
    assert.deepEqual(b.outputTokenIds, [22, 23]);
    assert.equal(b.numPreemptions, 1);
  });

  it("preempts itself when it is the newest, and admits nobody in that step", () => {
    const { pool, scheduler } = setup(3); // 12 tokens
    scheduler.addRequest(request("a", 5)); // 2 blocks
    scheduler.addRequest(request("b", 4)); // 1 block
    const s1 = scheduler.schedule();
    scheduler.updateFromOutput(s1, sampleAll(s1));
    scheduler.addRequest(request("c", 1));
    const s2 = scheduler.schedule();
    // a's 6th token fits in its blocks; b's 5th needs a block, and b is the newest unscheduled.
    assert.deepEqual(s2.preemptedRequestIds, ["b"]);
    assert.deepEqual(shape(s2), [["a", 5, 1, true]]);
    // c would fit in b's freed block, but memory is tight this step: no admission.
    assert.equal(pool.usedBlocks, 2);
    assert.equal(scheduler.numWaiting, 2);
    scheduler.updateFromOutput(s2, sampleAll(s2));
    // Next step: b (front of the queue) needs 5 tokens = 2 blocks, only 1 free: FCFS keeps c waiting too.
    assert.deepEqual(shape(scheduler.schedule()), [["a", 6, 1, true]]);
  });

  it("stops on EOS (unless ignored), stop ids, maxTokens and maxModelLen", () => {
    const { pool, scheduler } = setup(64, { maxModelLen: 12 });
    const eos = request("eos", 3);
    const ignore = request("ignore", 3, { ignoreEos: true, maxTokens: 2 });
    const stop = request("stop", 3, { stopTokenIds: [7] });
    const long = request("long", 10);
    for (const r of [eos, ignore, stop, long]) scheduler.addRequest(r);
    const tokens: Record<string, number> = { eos: EOS, ignore: EOS, stop: 7, long: 5 };
    const s1 = scheduler.schedule();
    const u1 = scheduler.updateFromOutput(
      s1,
      sampleAll(s1, (id) => tokens[id]!),
    );
    assert.deepEqual(
      u1.finished.map((r) => [r.requestId, r.finishReason]),
      [
        ["eos", "stop"],
        ["stop", "stop"],
      ],
    );
    assert.equal(u1.newTokens.length, 4);
    const s2 = scheduler.schedule();
    const u2 = scheduler.updateFromOutput(
      s2,
      sampleAll(s2, (id) => tokens[id]!),
    );
    // ignore: 2 tokens = maxTokens; long: 10 + 2 = maxModelLen.
    assert.deepEqual(u2.finished.map((r) => [r.requestId, r.finishReason]).sort(), [
      ["ignore", "length"],
      ["long", "length"],
    ]);
    assert.equal(pool.usedBlocks, 0);
    assert.equal(scheduler.hasUnfinishedRequests, false);
  });

  it("returns every block on abort and error, including requests aborted mid-prefill", () => {
    const { pool, scheduler } = setup(16, { maxNumBatchedTokens: 8 });
    for (const id of ["a", "b", "c"]) scheduler.addRequest(request(id, 12));
    const s1 = scheduler.schedule();
    assert.deepEqual(shape(s1), [["a", 0, 8, false]]);
    scheduler.finishRequest("a", "abort"); // aborted while its chunk is in flight
    const u1 = scheduler.updateFromOutput(s1, sampleAll(s1));
    assert.equal(u1.finished.length, 0);
    const s2 = scheduler.schedule();
    assert.deepEqual(shape(s2), [["b", 0, 8, false]]);
    const u2 = scheduler.updateFromOutput(s2, {
      sampled: new Map(),
      failed: new Map([["b", new ExpertMeshError(Code.INTERNAL, "boom")]]),
    });
    assert.deepEqual(
      u2.finished.map((r) => [r.requestId, r.finishReason]),
      [["b", "error"]],
    );
    scheduler.finishRequest("c", "abort"); // waiting → aborted
    assert.equal(pool.usedBlocks, 0);
    assert.equal(scheduler.hasUnfinishedRequests, false);
    assert.equal(scheduler.schedule().scheduled.length, 0);
  });
});
