/**
 * A real byte-level BPE tokenizer (Hugging Face tokenizer.json + tokenizer_config.json) of an
 * exact vocabulary size: BOS/EOS specials at the config's ids, the 256 byte tokens of GPT-2's
 * byte-to-unicode alphabet, then merges — first learned from a small built-in corpus, then
 * deterministic fillers — until the vocabulary is full. Any UTF-8 text round-trips.
 */
import { Code, ExpertMeshError } from "@expertmesh/shared";

export const BOS_TOKEN = "<｜begin▁of▁sentence｜>";
export const EOS_TOKEN = "<｜end▁of▁sentence｜>";

export interface SyntheticTokenizerOptions {
  vocabSize: number;
  bosTokenId: number | null;
  eosTokenId: number | null;
  modelMaxLength: number;
}

export interface SyntheticTokenizerFiles {
  /** tokenizer.json contents. */
  tokenizer: Record<string, unknown>;
  /** tokenizer_config.json contents. */
  tokenizerConfig: Record<string, unknown>;
}

const CORPUS = [
  "The quick brown fox jumps over the lazy dog. The dog sleeps in the sun, and the fox runs into the woods.",
  "Mixture-of-experts models route every token to a few experts; the router picks the experts with the highest scores.",
  "Attention, experts, tokens, layers and weights: the model reads the prompt and then writes one token at a time.",
  "In the beginning there was a question, and the answer was that there is no answer without a question.",
  "Numbers like 1, 2, 3, 10, 42, 100, 2024 and 3.14159 appear in text; so do dates such as 2025-01-01.",
  "Café, naïve, résumé, Zürich, São Paulo; Привет, мир; 你好，世界; こんにちは; 안녕하세요; emoji 🙂🚀.",
  'def main():\n    return {"ok": true, "value": [1, 2, 3]}\n\nif __name__ == "__main__":\n    main()\n',
].join("\n");

/** GPT-2's reversible byte → printable-character map used by the ByteLevel pre-tokenizer/decoder. */
export function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const map: string[] = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    map[b] = printable.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + extra++);
  }
  return map;
}

/** GPT-2 pre-tokenisation (the ByteLevel pre-tokenizer's regex with use_regex). */
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

function learnMerges(byteChars: readonly string[], max: number): Array<[string, string]> {
  const encoder = new TextEncoder();
  // word (as its byte-level symbols) → frequency
  const words = new Map<string, { symbols: string[]; count: number }>();
  for (const piece of CORPUS.match(GPT2_SPLIT) ?? []) {
    const key = [...encoder.encode(piece)].map((b) => byteChars[b]!).join("");
    const w = words.get(key);
    if (w === undefined)
      words.set(key, { symbols: [...encoder.encode(piece)].map((b) => byteChars[b]!), count: 1 });
    else w.count++;
  }
  const merges: Array<[string, string]> = [];
  while (merges.length < max) {
    const pairs = new Map<string, number>();
    for (const { symbols, count } of words.values()) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = `${symbols[i]} ${symbols[i + 1]}`;
        pairs.set(key, (pairs.get(key) ?? 0) + count);
      }
    }
    let best: string | undefined;
    let bestCount = 1;
    for (const [key, count] of pairs) {
      if (count > bestCount || (count === bestCount && best !== undefined && key < best)) {
        best = key;
        bestCount = count;
      }
    }
    if (best === undefined) break; // no pair occurs twice: the corpus is exhausted
    const [a, b] = best.split(" ") as [string, string];
    merges.push([a, b]);
    for (const w of words.values()) {
      const next: string[] = [];
      for (let i = 0; i < w.symbols.length; i++) {
        if (i + 1 < w.symbols.length && w.symbols[i] === a && w.symbols[i + 1] === b) {
          next.push(a + b);
          i++;
        } else next.push(w.symbols[i]!);
      }
      w.symbols = next;
    }
  }
  return merges;
}

export function buildSyntheticTokenizer(options: SyntheticTokenizerOptions): SyntheticTokenizerFiles {
  const { vocabSize, bosTokenId, eosTokenId } = options;
  const specials = new Map<number, string>();
  if (bosTokenId !== null) specials.set(bosTokenId, BOS_TOKEN);
  if (eosTokenId !== null) specials.set(eosTokenId, eosTokenId === bosTokenId ? BOS_TOKEN : EOS_TOKEN);
  for (const id of specials.keys()) {
    if (id < 0 || id >= vocabSize)
      throw new ExpertMeshError(
        Code.INVALID_ARGUMENT,
        `special token id ${id} outside vocab_size ${vocabSize}`,
      );
  }
  const mergeCount = vocabSize - specials.size - 256;
  if (mergeCount < 0) {
    throw new ExpertMeshError(
      Code.INVALID_ARGUMENT,
      `vocab_size ${vocabSize} is too small for a byte-level tokenizer (needs ≥ ${256 + specials.size})`,
    );
  }

  const byteChars = bytesToUnicode();
  const known = new Set<string>(byteChars);
  const merges = learnMerges(byteChars, mergeCount);
  for (const [a, b] of merges) known.add(a + b);

  // Fillers: extend learned tokens and letters by common characters, in a fixed order.
  const alphabet = [
    ..."etaoinshrdlcumwfgypbvkjxqz",
    "Ġ",
    ..."ETAOINSHRDLCUMWFGYPBVKJXQZ",
    ..."0123456789",
    ...".,;:!?'\"-()[]{}",
  ];
  const bases = [...merges.map(([a, b]) => a + b), ...alphabet, ...byteChars];
  outer: for (const left of bases) {
    for (const right of alphabet) {
      if (merges.length >= mergeCount) break outer;
      if (!known.has(left) || known.has(left + right)) continue;
      merges.push([left, right]);
      known.add(left + right);
    }
  }
  for (let i = 0; merges.length < mergeCount; i++) {
    // Vocabularies beyond what the alphabet pairs give: pair byte tokens exhaustively.
    const left = byteChars[Math.floor(i / 256) % 256]!;
    const right = byteChars[i % 256]!;
    if (i >= 256 * 256)
      throw new ExpertMeshError(
        Code.INVALID_ARGUMENT,
        `vocab_size ${vocabSize} is too large for the synthetic tokenizer`,
      );
    if (known.has(left + right)) continue;
    merges.push([left, right]);
    known.add(left + right);
  }

  const vocab: Record<string, number> = {};
  let nextId = 0;
  const take = (): number => {
    while (specials.has(nextId)) nextId++;
    return nextId++;
  };
  for (const [id, content] of specials) vocab[content] = id;
  for (const c of byteChars) vocab[c] = take();
  for (const [a, b] of merges) vocab[a + b] = take();

  const addedTokens = [...specials].map(([id, content]) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: merges.map(([a, b]) => [a, b]),
    },
  };
  const tokenizerConfig = {
    add_bos_token: false,
    add_eos_token: false,
    bos_token: bosTokenId === null ? null : specials.get(bosTokenId),
    eos_token: eosTokenId === null ? null : specials.get(eosTokenId),
    clean_up_tokenization_spaces: false,
    model_max_length: options.modelMaxLength,
    tokenizer_class: "PreTrainedTokenizerFast",
  };
  return { tokenizer, tokenizerConfig };
}
