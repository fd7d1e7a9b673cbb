import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { buildSyntheticTokenizer } from "@expertmesh/model";
import { loadTokenizer } from "./load-tokenizer.ts";
import type { TextTokenizer } from "./load-tokenizer.ts";

const TEXTS = [
  "plain ASCII text, nothing special",
  "日本語のテキスト",
  "Ünïcödé mixed with ASCII and 🙂 emoji 🚀!",
  "👩‍👩‍👧 family, ∑ sum, € euro, 𝔘 math letter",
];

describe("createIncrementalDecoder", () => {
  let root: string;
  let tok: TextTokenizer;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "expertmesh-inc-"));
    // 512 tokens: multi-byte characters are split across byte tokens, the hard case.
    const { tokenizer, tokenizerConfig } = buildSyntheticTokenizer({
      vocabSize: 512,
      bosTokenId: 0,
      eosTokenId: 1,
      modelMaxLength: 64,
    });
    await mkdir(join(root, "m"));
    await writeFile(join(root, "m", "tokenizer.json"), JSON.stringify(tokenizer));
    await writeFile(join(root, "m", "tokenizer_config.json"), JSON.stringify(tokenizerConfig));
    tok = (await loadTokenizer(join(root, "m")))!;
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test("one id at a time: only complete characters, and the pieces add up to the text", () => {
    for (const text of TEXTS) {
      const dec = tok.createIncrementalDecoder();
      const pieces = tok.encode(text).map((id) => dec.push(id));
      pieces.push(dec.flush());
      for (const p of pieces) {
        assert.ok(!p.includes("\uFFFD"), `broken character in ${JSON.stringify(p)}`);
        assert.ok(
          !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(p),
          `lone surrogate in ${JSON.stringify(p)}`,
        );
      }
      assert.equal(pieces.join(""), text);
      if ([...text].some((c) => c.codePointAt(0)! > 0x7f))
        assert.ok(pieces.includes(""), "some byte tokens were held back");
    }
  });

  test("a character split over byte tokens is emitted once its last byte arrives", () => {
    const ids = tok.encode("日");
    assert.equal(ids.length, 3); // E6 97 A5: three byte tokens in a 512 vocabulary
    const dec = tok.createIncrementalDecoder();
    assert.equal(dec.push(ids[0]!), "");
    assert.equal(dec.push(ids[1]!), "");
    assert.equal(dec.push(ids[2]!), "日");
    assert.deepEqual(dec.generatedIds, ids);
  });

  test("flush emits what never completed as U+FFFD", () => {
    const dec = tok.createIncrementalDecoder();
    assert.equal(dec.push(tok.encode("a日")[0]!), "a");
    assert.equal(dec.push(tok.encode("日")[0]!), "");
    assert.equal(dec.flush(), "\uFFFD");
    assert.equal(dec.flush(), "");
  });

  test("prompt ids give context and are not emitted; specials skipped", () => {
    const prompt = [0, ...tok.encode("Question: what is it?")];
    const dec = tok.createIncrementalDecoder({ promptIds: prompt });
    const answer = " It is 日本.";
    const out = [...tok.encode(answer), 1].map((id) => dec.push(id)).join("") + dec.flush();
    assert.equal(out, answer);
    const keep = tok.createIncrementalDecoder({ skipSpecialTokens: false });
    assert.equal(keep.push(1), "<｜end▁of▁sentence｜>");
  });

  test("several ids per push", () => {
    const text = "batch 🙂 of ids";
    const ids = tok.encode(text);
    const dec = tok.createIncrementalDecoder();
    let out = "";
    for (let i = 0; i < ids.length; i += 3) out += dec.push(...ids.slice(i, i + 3));
    assert.equal(out + dec.flush(), text);
  });
});
