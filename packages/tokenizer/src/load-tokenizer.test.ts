import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { buildSyntheticTokenizer } from "@expertmesh/model";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { loadTokenizer, requireTokenizer } from "./load-tokenizer.ts";
import type { TextTokenizer } from "./load-tokenizer.ts";

const TEXTS = [
  "Hello world! The experts route every token.",
  "  leading spaces, tabs\tand\nnewlines\n\n",
  "Café naïve résumé — Zürich; Привет, мир; 你好，世界; こんにちは; 안녕하세요",
  "emoji 🙂🚀👩‍👩‍👧 and math ∑∫√ and 1234567890",
  'def f(x):\n    return {"a": [1, 2, 3]}',
];

async function writeTokenizerDir(root: string, vocabSize: number): Promise<string> {
  const dir = join(root, `v${vocabSize}`);
  const { tokenizer, tokenizerConfig } = buildSyntheticTokenizer({
    vocabSize,
    bosTokenId: 0,
    eosTokenId: 1,
    modelMaxLength: 4096,
  });
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir);
  await writeFile(join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
  await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify(tokenizerConfig));
  return dir;
}

describe("loadTokenizer on synthetic byte-level BPE tokenizers", () => {
  let root: string;
  const tokenizers = new Map<number, TextTokenizer>();
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "expertmesh-tok-"));
    for (const v of [512, 8192]) tokenizers.set(v, (await loadTokenizer(await writeTokenizerDir(root, v)))!);
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test("vocabulary is exactly vocab_size, specials at the config's ids", () => {
    for (const [v, tok] of tokenizers) {
      assert.equal(tok.vocabSize, v);
      assert.equal(tok.bosId, 0);
      assert.equal(tok.eosId, 1);
    }
  });

  test("encode/decode round-trips ASCII and multi-byte UTF-8", () => {
    for (const [v, tok] of tokenizers) {
      for (const text of TEXTS) {
        const ids = tok.encode(text);
        assert.ok(
          ids.every((id) => Number.isInteger(id) && id >= 2 && id < v),
          `ids in range for ${JSON.stringify(text)}`,
        );
        assert.equal(tok.decode(ids), text, `vocab ${v}`);
      }
    }
  });

  test("merges compress English (a real BPE, not just bytes)", () => {
    const text = "The quick brown fox jumps over the lazy dog.";
    const small = tokenizers.get(512)!.encode(text).length;
    const large = tokenizers.get(8192)!.encode(text).length;
    assert.ok(small < text.length, `${small} tokens for ${text.length} bytes`);
    assert.ok(large <= small);
  });

  test("special tokens: skipped in decode by default, kept on request, never produced by encode", () => {
    const tok = tokenizers.get(512)!;
    const ids = [0, ...tok.encode("hi"), 1];
    assert.equal(tok.decode(ids), "hi");
    assert.equal(
      tok.decode(ids, { skipSpecialTokens: false }),
      "<｜begin▁of▁sentence｜>hi<｜end▁of▁sentence｜>",
    );
    assert.deepEqual(tok.encode(""), []);
    assert.equal(tok.decode([]), "");
  });

  test("ids are dense 0..V-1 with unique tokens, and every one decodes", () => {
    for (const v of [512, 8192]) {
      const { tokenizer } = buildSyntheticTokenizer({
        vocabSize: v,
        bosTokenId: 0,
        eosTokenId: 1,
        modelMaxLength: 64,
      });
      const vocab = (tokenizer["model"] as { vocab: Record<string, number> }).vocab;
      assert.deepEqual(
        Object.values(vocab).sort((a, b) => a - b),
        Array.from({ length: v }, (_, i) => i),
      );
    }
    const tok = tokenizers.get(512)!;
    for (let id = 0; id < 512; id++)
      assert.ok(tok.decode([id], { skipSpecialTokens: false }).length > 0, `id ${id}`);
  });

  test("ids outside the vocabulary are INVALID_ARGUMENT", () => {
    const tok = tokenizers.get(512)!;
    for (const bad of [512, -1, 1.5]) {
      assert.throws(
        () => tok.decode([3, bad]),
        (err: unknown) =>
          err instanceof ExpertMeshError &&
          err.code === Code.INVALID_ARGUMENT &&
          err.message.includes(`token id ${bad}`),
      );
    }
  });
});

describe("a checkpoint without tokenizer.json", () => {
  test("loadTokenizer returns null; requireTokenizer is a clear FAILED_PRECONDITION", async () => {
    const dir = await mkdtemp(join(tmpdir(), "expertmesh-notok-"));
    try {
      assert.equal(await loadTokenizer(dir), null);
      await assert.rejects(requireTokenizer(dir), (err: unknown) => {
        assert.ok(err instanceof ExpertMeshError);
        assert.equal(err.code, Code.FAILED_PRECONDITION);
        assert.equal(err.message, "model has no tokenizer.json: send token ids");
        return true;
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a corrupt tokenizer.json is FAILED_PRECONDITION naming the file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "expertmesh-badtok-"));
    try {
      await writeFile(join(dir, "tokenizer.json"), "{ not json");
      await assert.rejects(
        loadTokenizer(dir),
        (err: unknown) =>
          err instanceof ExpertMeshError &&
          err.code === Code.FAILED_PRECONDITION &&
          err.message.includes("tokenizer.json"),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
