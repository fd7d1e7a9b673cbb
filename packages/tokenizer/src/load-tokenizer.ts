/**
 * A model's text tokenizer, from the Hugging Face `tokenizer.json` (+ `tokenizer_config.json`)
 * in its checkpoint directory, run by @huggingface/tokenizers. Checkpoints without a
 * tokenizer.json (the test fixtures) serve token ids only: `loadTokenizer` returns null and
 * text requests get `noTokenizerError`.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { createIncrementalDecoder } from "./incremental-decoder.ts";
import type { IncrementalDecoder, IncrementalDecoderOptions } from "./incremental-decoder.ts";

/**
 * The part of @huggingface/tokenizers 0.2 used here. Its bundled .d.ts files use
 * extensionless relative imports, which NodeNext resolution cannot follow, so the types are
 * restated rather than left as `any`.
 */
interface HfTokenizer {
  encode(text: string, options: { add_special_tokens: boolean }): { ids: number[] };
  decode(ids: number[], options: { skip_special_tokens: boolean }): string;
  token_to_id(token: string): number | undefined;
  get_vocab(withAddedTokens: boolean): Map<string, number>;
}
const HfTokenizerClass = Tokenizer as unknown as new (
  tokenizerJson: object,
  tokenizerConfig: object,
) => HfTokenizer;

export interface DecodeOptions {
  /** Drop BOS/EOS and other special tokens from the text (default true, as vLLM). */
  skipSpecialTokens?: boolean;
}

export interface TextTokenizer {
  /** Ids known to the tokenizer (0..vocabSize-1); may be fewer than the model's vocab_size. */
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  /** Token ids of `text`, without BOS (prepend `bosId` where the prompt format wants it). */
  encode(text: string): number[];
  decode(ids: readonly number[], options?: DecodeOptions): string;
  /** Streaming detokenizer: feed ids as they are generated, get only complete UTF-8 text. */
  createIncrementalDecoder(options?: IncrementalDecoderOptions): IncrementalDecoder;
}

export function noTokenizerError(modelDir: string): ExpertMeshError {
  return new ExpertMeshError(Code.FAILED_PRECONDITION, "model has no tokenizer.json: send token ids", {
    details: { modelDir },
  });
}

async function readJsonIfPresent(path: string): Promise<Record<string, unknown> | null> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      `${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? "error"})`,
      { cause: err },
    );
  }
  try {
    const value = JSON.parse(text) as unknown;
    if (typeof value !== "object" || value === null || Array.isArray(value))
      throw new Error("not a JSON object");
    return value as Record<string, unknown>;
  } catch (err) {
    throw new ExpertMeshError(Code.FAILED_PRECONDITION, `${path}: not a valid JSON object`, {
      details: { file: path },
      cause: err,
    });
  }
}

/** tokenizer_config's `bos_token`/`eos_token` are a string or an AddedToken-like `{content}`. */
function tokenContent(value: unknown): string | null {
  if (typeof value === "string") return value;
  if (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { content?: unknown }).content === "string"
  ) {
    return (value as { content: string }).content;
  }
  return null;
}

/** Loads the tokenizer of a checkpoint directory, or null when it has no tokenizer.json. */
export async function loadTokenizer(modelDir: string): Promise<TextTokenizer | null> {
  const tokenizerPath = join(modelDir, "tokenizer.json");
  const tokenizerJson = await readJsonIfPresent(tokenizerPath);
  if (tokenizerJson === null) return null;
  const tokenizerConfig = (await readJsonIfPresent(join(modelDir, "tokenizer_config.json"))) ?? {};
  const modelConfig = (await readJsonIfPresent(join(modelDir, "config.json"))) ?? {};
  let tokenizer: HfTokenizer;
  try {
    // Decoding never rewrites spaces around punctuation: the text must round-trip.
    tokenizer = new HfTokenizerClass(tokenizerJson, {
      ...tokenizerConfig,
      clean_up_tokenization_spaces: false,
    });
  } catch (err) {
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      `${tokenizerPath}: unsupported tokenizer (${(err as Error).message})`,
      {
        details: { file: tokenizerPath },
        cause: err,
      },
    );
  }
  const idOf = (configKey: string, idKey: string): number | null => {
    const content = tokenContent(tokenizerConfig[configKey]);
    const fromTokenizer = content === null ? undefined : tokenizer.token_to_id(content);
    if (fromTokenizer !== undefined) return fromTokenizer;
    const fromModel = modelConfig[idKey];
    if (typeof fromModel === "number") return fromModel;
    if (Array.isArray(fromModel) && typeof fromModel[0] === "number") return fromModel[0];
    return null;
  };
  let maxId = -1;
  for (const id of tokenizer.get_vocab(true).values()) maxId = Math.max(maxId, id);
  return new HfTextTokenizer(
    tokenizer,
    maxId + 1,
    idOf("bos_token", "bos_token_id"),
    idOf("eos_token", "eos_token_id"),
  );
}

/** loadTokenizer, or the clear FAILED_PRECONDITION a text request gets when there is none. */
export async function requireTokenizer(modelDir: string): Promise<TextTokenizer> {
  const tokenizer = await loadTokenizer(modelDir);
  if (tokenizer === null) throw noTokenizerError(modelDir);
  return tokenizer;
}

class HfTextTokenizer implements TextTokenizer {
  constructor(
    private readonly tokenizer: HfTokenizer,
    readonly vocabSize: number,
    readonly bosId: number | null,
    readonly eosId: number | null,
  ) {}

  encode(text: string): number[] {
    if (text.length === 0) return [];
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new ExpertMeshError(
          Code.INVALID_ARGUMENT,
          `token id ${id} is outside the tokenizer's vocabulary [0, ${this.vocabSize})`,
          {
            details: { field: "token_ids" },
          },
        );
      }
    }
    if (ids.length === 0) return ""; // the library rejects an empty list
    return this.tokenizer.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? true });
  }

  createIncrementalDecoder(options: IncrementalDecoderOptions = {}): IncrementalDecoder {
    return createIncrementalDecoder((ids, skip) => this.decode(ids, { skipSpecialTokens: skip }), options);
  }
}
