/**
 * A real byte-level BPE tokenizer for the tests (the synthetic model maker's, vocab 512, BOS 0,
 * EOS 1), written to a temp directory and loaded through @expertmesh/tokenizer.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildSyntheticTokenizer } from "@expertmesh/model";
import { requireTokenizer } from "@expertmesh/tokenizer";
import type { TextTokenizer } from "@expertmesh/tokenizer";

export async function loadSyntheticTokenizer(): Promise<TextTokenizer> {
  const files = buildSyntheticTokenizer({
    vocabSize: 512,
    bosTokenId: 0,
    eosTokenId: 1,
    modelMaxLength: 2560,
  });
  const dir = await mkdtemp(join(tmpdir(), "router-tokenizer-"));
  try {
    await writeFile(join(dir, "tokenizer.json"), JSON.stringify(files.tokenizer));
    await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify(files.tokenizerConfig));
    return await requireTokenizer(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
