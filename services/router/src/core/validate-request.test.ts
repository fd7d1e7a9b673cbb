import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import type { TextTokenizer } from "@expertmesh/tokenizer";
import { loadSyntheticTokenizer } from "../../tests/synthetic-tokenizer.ts";
import type { GenerationRequest, SamplingOptions } from "./generation.ts";
import { resolveRequest } from "./validate-request.ts";
import type { ModelLimits } from "./validate-request.ts";

const LIMITS: ModelLimits = { vocabSize: 512, maxModelLen: 64, defaultMaxTokens: 16 };

function request(
  over: Partial<GenerationRequest> = {},
  sampling: Partial<SamplingOptions> = {},
): GenerationRequest {
  return {
    requestId: "r1",
    prompt: { tokenIds: [5, 6, 7] },
    sampling: {
      temperature: 0,
      topP: 1,
      topK: 0,
      maxTokens: 0,
      stop: [],
      stopTokenIds: [],
      ignoreEos: false,
      ...sampling,
    },
    logprobs: false,
    topLogprobs: 0,
    priority: "interactive",
    ...over,
  };
}

function rejectsField(fn: () => unknown, field: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ExpertMeshError, String(e));
    assert.equal(e.code, Code.INVALID_ARGUMENT);
    assert.equal(e.details.field, field, e.message);
    assert.ok(e.message.startsWith(`${field}: `), e.message);
    return true;
  });
}

describe("resolveRequest", () => {
  let tokenizer: TextTokenizer;
  before(async () => {
    tokenizer = await loadSyntheticTokenizer();
  });

  it("fills defaults: max_tokens from the server default capped by the context, top_k -1 → 0, dedup", () => {
    const r = resolveRequest(request({}, { topK: -1, stopTokenIds: [3, 3] }), LIMITS, null);
    assert.deepEqual(r.promptTokenIds, [5, 6, 7]);
    assert.equal(r.sampling.maxTokens, 16);
    assert.equal(r.sampling.topK, 0);
    assert.deepEqual(r.sampling.stopTokenIds, [3]);
    assert.equal(r.detokenize, false, "no tokenizer: token ids only");
    const near = resolveRequest(
      request({ prompt: { tokenIds: Array.from({ length: 60 }, () => 9) } }),
      LIMITS,
      null,
    );
    assert.equal(near.sampling.maxTokens, 4, "only 4 tokens of context left");
    assert.equal(
      resolveRequest(request({ topLogprobs: 3 }), LIMITS, null).logprobs,
      true,
      "top_logprobs implies logprobs",
    );
  });

  it("tokenizes text with BOS first, unless addBos is false", () => {
    const r = resolveRequest(request({ prompt: { text: "Hello world" } }), LIMITS, tokenizer);
    assert.equal(r.promptTokenIds[0], 0);
    assert.deepEqual(r.promptTokenIds.slice(1), tokenizer.encode("Hello world"));
    assert.equal(r.detokenize, true);
    const chat = resolveRequest(request({ prompt: { text: "Hello", addBos: false } }), LIMITS, tokenizer);
    assert.deepEqual(chat.promptTokenIds, tokenizer.encode("Hello"));
  });

  it("rejects an empty prompt (text or ids)", () => {
    rejectsField(() => resolveRequest(request({ prompt: { tokenIds: [] } }), LIMITS, null), "prompt");
    rejectsField(() => resolveRequest(request({ prompt: { text: "" } }), LIMITS, tokenizer), "prompt");
  });
  it("rejects text when the model has no tokenizer", () => {
    rejectsField(() => resolveRequest(request({ prompt: { text: "hi" } }), LIMITS, null), "prompt");
  });
  it("rejects prompt token ids outside the vocabulary", () => {
    rejectsField(() => resolveRequest(request({ prompt: { tokenIds: [1, 512] } }), LIMITS, null), "prompt");
    rejectsField(() => resolveRequest(request({ prompt: { tokenIds: [-1] } }), LIMITS, null), "prompt");
    rejectsField(() => resolveRequest(request({ prompt: { tokenIds: [1.5] } }), LIMITS, null), "prompt");
  });
  it("rejects a prompt that fills the context", () => {
    rejectsField(
      () =>
        resolveRequest(request({ prompt: { tokenIds: Array.from({ length: 64 }, () => 9) } }), LIMITS, null),
      "prompt",
    );
  });
  it("rejects prompt + max_tokens beyond the context", () => {
    rejectsField(() => resolveRequest(request({}, { maxTokens: 62 }), LIMITS, null), "sampling.max_tokens");
    assert.equal(resolveRequest(request({}, { maxTokens: 61 }), LIMITS, null).sampling.maxTokens, 61);
  });
  it("rejects a negative or fractional max_tokens", () => {
    rejectsField(() => resolveRequest(request({}, { maxTokens: -1 }), LIMITS, null), "sampling.max_tokens");
    rejectsField(() => resolveRequest(request({}, { maxTokens: 2.5 }), LIMITS, null), "sampling.max_tokens");
  });
  it("rejects temperature < 0, > 2 or NaN", () => {
    for (const t of [-0.1, 2.5, Number.NaN])
      rejectsField(
        () => resolveRequest(request({}, { temperature: t }), LIMITS, null),
        "sampling.temperature",
      );
  });
  it("rejects top_p outside (0, 1]", () => {
    for (const p of [0, -0.5, 1.01])
      rejectsField(() => resolveRequest(request({}, { topP: p }), LIMITS, null), "sampling.top_p");
  });
  it("rejects top_k < -1 or fractional", () => {
    for (const k of [-2, 1.5])
      rejectsField(() => resolveRequest(request({}, { topK: k }), LIMITS, null), "sampling.top_k");
  });
  it("rejects min_p outside [0, 1]", () => {
    rejectsField(() => resolveRequest(request({}, { minP: 1.5 }), LIMITS, null), "sampling.min_p");
  });
  it("rejects a seed outside uint64", () => {
    rejectsField(() => resolveRequest(request({}, { seed: -1n }), LIMITS, null), "sampling.seed");
    rejectsField(() => resolveRequest(request({}, { seed: 2n ** 64n }), LIMITS, null), "sampling.seed");
  });
  it("rejects top_logprobs > 20 or < 0", () => {
    rejectsField(() => resolveRequest(request({ topLogprobs: 21 }), LIMITS, null), "top_logprobs");
    rejectsField(() => resolveRequest(request({ topLogprobs: -1 }), LIMITS, null), "top_logprobs");
  });
  it("rejects stop token ids outside the vocabulary", () => {
    rejectsField(
      () => resolveRequest(request({}, { stopTokenIds: [600] }), LIMITS, null),
      "sampling.stop_token_ids",
    );
  });
  it("rejects bad stop strings: empty, too many, without text", () => {
    rejectsField(() => resolveRequest(request({}, { stop: [""] }), LIMITS, tokenizer), "sampling.stop");
    rejectsField(
      () =>
        resolveRequest(
          request({}, { stop: Array.from({ length: 17 }, (_, i) => `s${i}`) }),
          LIMITS,
          tokenizer,
        ),
      "sampling.stop",
    );
    rejectsField(() => resolveRequest(request({}, { stop: ["x"] }), LIMITS, null), "sampling.stop");
    rejectsField(
      () => resolveRequest(request({ skipDetokenize: true }, { stop: ["x"] }), LIMITS, tokenizer),
      "sampling.stop",
    );
  });
  it("rejects an overlong request id", () => {
    rejectsField(() => resolveRequest(request({ requestId: "x".repeat(257) }), LIMITS, null), "request_id");
  });
});
