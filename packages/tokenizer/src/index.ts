export { loadTokenizer, noTokenizerError, requireTokenizer } from "./load-tokenizer.ts";
export type { DecodeOptions, TextTokenizer } from "./load-tokenizer.ts";
export { createIncrementalDecoder } from "./incremental-decoder.ts";
export type { IncrementalDecoder, IncrementalDecoderOptions } from "./incremental-decoder.ts";
