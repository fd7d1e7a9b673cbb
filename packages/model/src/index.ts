export type { ModelConfig, YarnScaling } from "./config/model-config.ts";
export { parseModelConfig, parseModelConfigWithWarnings } from "./config/parse-model-config.ts";
export type { ParsedModelConfig } from "./config/parse-model-config.ts";
export { CONFIG_KEYS, configKeyDoc, renderConfigKeyTable } from "./config/config-keys.ts";
export type { ConfigKeyDoc, ConfigKeyHandling } from "./config/config-keys.ts";
export { openCheckpoint, INDEX_FILE, SINGLE_FILE } from "./checkpoint/checkpoint.ts";
export type { Checkpoint, OpenCheckpointOptions, StorageDtype, TensorInfo } from "./checkpoint/checkpoint.ts";
export {
  expectedShape,
  expectedTensorNames,
  isFp8Linear,
  layerIndexOf,
} from "./checkpoint/expected-shape.ts";
export { FP8_E4M3_MAX, FP8_E4M3_TABLE, f16ToF32 } from "./checkpoint/dtype-decode.ts";
export * from "./runtime/index.ts";
export { writeSyntheticCheckpoint } from "./synthetic/write-synthetic-checkpoint.ts";
export type {
  SyntheticCheckpointOptions,
  SyntheticCheckpointResult,
} from "./synthetic/write-synthetic-checkpoint.ts";
export { PRESETS, PRESET_NAMES } from "./synthetic/presets.ts";
export type { PresetName } from "./synthetic/presets.ts";
export { buildSyntheticTokenizer, BOS_TOKEN, EOS_TOKEN } from "./synthetic/synthetic-tokenizer.ts";
export type { SyntheticTokenizerFiles, SyntheticTokenizerOptions } from "./synthetic/synthetic-tokenizer.ts";
