import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import type { TextTokenizer } from "@expertmesh/tokenizer";
import { loadSyntheticTokenizer } from "../../tests/synthetic-tokenizer.ts";
import type { SequenceToken } from "./attention-pool.ts";
import { OutputProcessor } from "./output-processor.ts";
import type { OutputProcessorOptions } from "./output-processor.ts";

const tok = (tokenId: number, logprob?: number): SequenceToken => ({ tokenId, logprob, top: [] });

describe("OutputProcessor", () => {
  let tokenizer: TextTokenizer;
  let options: OutputProcessorOptions;
  before(async () => {
    tokenizer = await loadSyntheticTokenizer();
    options = {
      tokenizer,
      detokenize: true,
      promptTokenIds: [0, ...tokenizer.encode("Say:")],
      stop: [],
      stopTokenIds: [],
      eosTokenIds: [1],
      ignoreEos: false,
      logprobs: false,
    };
  });

  it("detokenizes incrementally, holding back an unfinished UTF-8 character", () => {
    const ids = tokenizer.encode(" 🙂 ok");
    // The emoji is several byte-level tokens: no text until its last byte arrives.
    const p = new OutputProcessor(options);
    const texts = ids.map((id) => p.push([tok(id)]).text);
    assert.equal(texts.join(""), " 🙂 ok");
    assert.ok(
      texts.slice(0, 3).includes(""),
      `some partial-character steps released nothing: ${JSON.stringify(texts)}`,
    );
    assert.ok(!texts.join("").includes("\uFFFD"));
    const final = p.finish("length", {
      promptTokens: options.promptTokenIds.length,
      completionTokens: ids.length,
    });
    assert.deepEqual(final.usage, {
      promptTokens: options.promptTokenIds.length,
      completionTokens: ids.length,
    });
    assert.equal(final.finishReason, "length");
  });

  it("ends with 'stop' at a stop string split across tokens; the match and later tokens are dropped", () => {
    const ids = tokenizer.encode("The fox. END of it");
    const p = new OutputProcessor({ ...options, stop: ["END"] });
    let text = "";
    let last;
    for (const id of ids) {
      last = p.push([tok(id)]);
      text += last.text;
      if (last.finishReason !== undefined) break;
    }
    assert.equal(text, "The fox. ");
    assert.equal(last?.finishReason, "stop");
    const upTo = tokenizer.encode("The fox. END").length;
    assert.equal(last?.usage?.completionTokens, upTo, "tokens through the one completing the match");
    assert.equal(p.finished, "stop");
    assert.deepEqual(p.push([tok(5)]).tokenIds, [], "nothing after the end");
  });

  it("returns the ids of EOS and stop tokens but not their text; ignore_eos keeps EOS text", () => {
    const a = tokenizer.encode("hi");
    const p = new OutputProcessor({ ...options, stopTokenIds: [a[0]!] });
    const chunk = p.push([tok(a[0]!)]);
    assert.deepEqual(chunk.tokenIds, [a[0]]);
    assert.equal(chunk.text, "");
    const q = new OutputProcessor(options);
    assert.equal(q.push([tok(a[0]!), tok(1)]).text, "h");
    assert.equal(q.finish("stop").usage?.completionTokens, 2);
  });

  it("keeps logprobs parallel to token ids; no text without detokenization", () => {
    const p = new OutputProcessor({ ...options, tokenizer: null, detokenize: false, logprobs: true });
    const chunk = p.push([tok(7, -0.5), { tokenId: 8, logprob: -1.5, top: [{ tokenId: 8, logprob: -1.5 }] }]);
    assert.equal(chunk.text, "");
    assert.deepEqual(chunk.logprobs, [
      { tokenId: 7, logprob: -0.5, top: [] },
      { tokenId: 8, logprob: -1.5, top: [{ tokenId: 8, logprob: -1.5 }] },
    ]);
    const final = p.finish("cancelled");
    assert.deepEqual(final.usage, { promptTokens: options.promptTokenIds.length, completionTokens: 2 });
  });

  it("releases a held-back tail that never became a stop string at the end", () => {
    const p = new OutputProcessor({ ...options, stop: ["fox!"] });
    const text = tokenizer
      .encode("a fox")
      .map((id) => p.push([tok(id)]).text)
      .join("");
    assert.equal(text, "a ");
    assert.equal(p.finish("length").text, "fox");
  });
});
