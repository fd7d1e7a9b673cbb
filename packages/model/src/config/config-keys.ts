/**
 * Every config.json key ExpertMesh knows, and what it does with it. This table is the
 * single source of truth: `parseModelConfig` treats keys not listed here as unknown
 * (ignored, with a warning), and docs/model-config.md is rendered from it
 * (`renderConfigKeyTable`; a test keeps the two in sync).
 */

export type ConfigKeyHandling =
  /** Read into a ModelConfig field. */
  | "mapped"
  /** Read and validated; only the listed values are accepted (the math for others is not implemented). */
  | "checked"
  /** Accepted and not used; `note` says why. */
  | "ignored";

export interface ConfigKeyDoc {
  readonly key: string;
  readonly handling: ConfigKeyHandling;
  /** ModelConfig field(s) the key feeds, when mapped. */
  readonly field?: string;
  /** Accepted values; anything else is rejected with INVALID_ARGUMENT naming the key and value. */
  readonly accepts: string;
  /** Value used when the key is absent; "required" when there is none. */
  readonly default: string;
  readonly note: string;
}

export const CONFIG_KEYS: readonly ConfigKeyDoc[] = [
  // Identity
  {
    key: "model_type",
    handling: "checked",
    accepts: '"deepseek_v3"',
    default: "required",
    note: "Only the DeepSeek-V3 architecture is implemented.",
  },
  {
    key: "architectures",
    handling: "ignored",
    accepts: "any",
    default: "-",
    note: "Python class names for transformers; model_type decides.",
  },
  {
    key: "auto_map",
    handling: "ignored",
    accepts: "any",
    default: "-",
    note: "Remote-code module paths for transformers.",
  },
  {
    key: "transformers_version",
    handling: "ignored",
    accepts: "any",
    default: "-",
    note: "Version that wrote the file.",
  },
  {
    key: "_name_or_path",
    handling: "ignored",
    accepts: "any",
    default: "-",
    note: "Where transformers loaded the config from.",
  },
  {
    key: "torch_dtype",
    handling: "ignored",
    accepts: "any",
    default: "-",
    note: "ExpertMesh computes in float32; storage dtypes come from the safetensors headers.",
  },
  {
    key: "dtype",
    handling: "ignored",
    accepts: "any",
    default: "-",
    note: "Newer transformers' name for torch_dtype; ignored for the same reason.",
  },
  // Sizes
  {
    key: "vocab_size",
    handling: "mapped",
    field: "vocabSize",
    accepts: "positive integer",
    default: "required",
    note: "Rows of embed_tokens and lm_head.",
  },
  {
    key: "hidden_size",
    handling: "mapped",
    field: "hiddenSize",
    accepts: "positive integer",
    default: "required",
    note: "Residual stream width.",
  },
  {
    key: "num_hidden_layers",
    handling: "mapped",
    field: "numLayers",
    accepts: "positive integer",
    default: "required",
    note: "Main-model layers; tensors of layers at or beyond it (MTP) are skipped.",
  },
  {
    key: "intermediate_size",
    handling: "mapped",
    field: "intermediateSize",
    accepts: "positive integer",
    default: "required",
    note: "Dense-MLP width of layers below first_k_dense_replace.",
  },
  {
    key: "moe_intermediate_size",
    handling: "mapped",
    field: "moeIntermediateSize",
    accepts: "positive integer",
    default: "required",
    note: "Width of each routed expert.",
  },
  {
    key: "max_position_embeddings",
    handling: "mapped",
    field: "maxPositionEmbeddings",
    accepts: "positive integer",
    default: "4096",
    note: "Longest context. DeepSeek's reference enables YaRN only when this exceeds original_max_position_embeddings.",
  },
  // Attention (MLA)
  {
    key: "num_attention_heads",
    handling: "mapped",
    field: "numHeads",
    accepts: "positive integer",
    default: "required",
    note: "MLA query/key/value heads.",
  },
  {
    key: "num_key_value_heads",
    handling: "checked",
    accepts: "equal to num_attention_heads",
    default: "num_attention_heads",
    note: "MLA has no grouped-query sharing; a different value means another architecture.",
  },
  {
    key: "q_lora_rank",
    handling: "mapped",
    field: "qLoraRank",
    accepts: "positive integer",
    default: "required",
    note: "null (a direct q_proj, DeepSeek-V2-Lite style) is rejected: not implemented.",
  },
  {
    key: "kv_lora_rank",
    handling: "mapped",
    field: "kvLoraRank",
    accepts: "positive integer",
    default: "required",
    note: "Latent KV width (cached per token with qk_rope_head_dim).",
  },
  {
    key: "qk_nope_head_dim",
    handling: "mapped",
    field: "qkNopeHeadDim",
    accepts: "positive integer",
    default: "required",
    note: "Per-head query/key dims without RoPE.",
  },
  {
    key: "qk_rope_head_dim",
    handling: "mapped",
    field: "qkRopeHeadDim",
    accepts: "positive even integer",
    default: "required",
    note: "Per-head query/key dims with (interleaved) RoPE.",
  },
  {
    key: "v_head_dim",
    handling: "mapped",
    field: "vHeadDim",
    accepts: "positive integer",
    default: "required",
    note: "Per-head value dims.",
  },
  {
    key: "head_dim",
    handling: "ignored",
    accepts: "any",
    default: "-",
    note: "Newer transformers set it to qk_rope_head_dim; the MLA dims above are authoritative.",
  },
  {
    key: "attention_bias",
    handling: "checked",
    accepts: "false",
    default: "false",
    note: "Biases on the attention projections are not implemented.",
  },
  { key: "attention_dropout", handling: "ignored", accepts: "any", default: "-", note: "Training only." },
  {
    key: "rope_theta",
    handling: "mapped",
    field: "ropeTheta",
    accepts: "positive number",
    default: "10000",
    note: "RoPE base.",
  },
  {
    key: "rope_scaling",
    handling: "mapped",
    field: "ropeScaling",
    accepts:
      'null or {"type"|"rope_type": "yarn", factor, original_max_position_embeddings, beta_fast, beta_slow, mscale, mscale_all_dim}',
    default: "null (plain RoPE)",
    note: "Only YaRN is implemented. Absent fields default as DeepSeek's reference: factor 40, original_max_position_embeddings 4096, beta_fast 32, beta_slow 1, mscale 1, mscale_all_dim 1.",
  },
  {
    key: "rope_parameters",
    handling: "mapped",
    field: "ropeScaling, ropeTheta",
    accepts: 'transformers v5 form: {"rope_type": "default"|"yarn", "rope_theta", YaRN fields}',
    default: "-",
    note: "Read only when rope_scaling is absent; same rules as rope_scaling.",
  },
  {
    key: "rope_interleave",
    handling: "checked",
    accepts: "true",
    default: "true",
    note: "DeepSeek rotates interleaved pairs (2i, 2i+1); the half-split layout is not implemented.",
  },
  // MoE
  {
    key: "n_routed_experts",
    handling: "mapped",
    field: "nRoutedExperts",
    accepts: "positive integer",
    default: "required",
    note: "Logical experts per MoE layer.",
  },
  {
    key: "n_shared_experts",
    handling: "mapped",
    field: "nSharedExperts, sharedIntermediateSize",
    accepts: "positive integer",
    default: "1",
    note: "Shared experts are one SwiGLU of width moe_intermediate_size × n_shared_experts (how the checkpoint stores them). 0 or null is rejected.",
  },
  {
    key: "num_experts_per_tok",
    handling: "mapped",
    field: "numExpertsPerTok",
    accepts: "positive integer ≤ topk_group × experts per group",
    default: "required",
    note: "Routed experts per token (top-k).",
  },
  {
    key: "n_group",
    handling: "mapped",
    field: "nGroup",
    accepts: "positive integer dividing n_routed_experts, ≥ 2 experts per group",
    default: "required",
    note: "Expert groups (group score = sum of the top-2 biased scores).",
  },
  {
    key: "topk_group",
    handling: "mapped",
    field: "topkGroup",
    accepts: "positive integer ≤ n_group",
    default: "required",
    note: "Groups kept per token; also the node limit of expert placement.",
  },
  {
    key: "routed_scaling_factor",
    handling: "mapped",
    field: "routedScalingFactor",
    accepts: "positive number",
    default: "required",
    note: "Multiplies the normalised routing weights.",
  },
  {
    key: "first_k_dense_replace",
    handling: "mapped",
    field: "firstKDenseReplace",
    accepts: "integer in [0, num_hidden_layers]",
    default: "required",
    note: "Layers below it use the dense MLP.",
  },
  {
    key: "moe_layer_freq",
    handling: "checked",
    accepts: "1",
    default: "1",
    note: "Every layer from first_k_dense_replace on is MoE; other frequencies are not implemented.",
  },
  {
    key: "scoring_func",
    handling: "checked",
    accepts: '"sigmoid"',
    default: '"sigmoid"',
    note: "Softmax gating (DeepSeek-V2) is not implemented.",
  },
  {
    key: "topk_method",
    handling: "checked",
    accepts: '"noaux_tc"',
    default: '"noaux_tc"',
    note: "Group-limited top-k with e_score_correction_bias; greedy/group_limited_greedy are not implemented.",
  },
  {
    key: "norm_topk_prob",
    handling: "checked",
    accepts: "true",
    default: "true",
    note: "Routing weights are normalised to sum 1 before routed_scaling_factor.",
  },
  {
    key: "hidden_act",
    handling: "checked",
    accepts: '"silu"',
    default: '"silu"',
    note: "SwiGLU with SiLU; other activations are not implemented.",
  },
  {
    key: "ep_size",
    handling: "ignored",
    accepts: "any",
    default: "-",
    note: "Training-time expert parallelism; ExpertMesh places experts itself.",
  },
  { key: "aux_loss_alpha", handling: "ignored", accepts: "any", default: "-", note: "Training only." },
  { key: "seq_aux", handling: "ignored", accepts: "any", default: "-", note: "Training only." },
  {
    key: "num_nextn_predict_layers",
    handling: "mapped",
    field: "numNextnPredictLayers",
    accepts: "integer ≥ 0",
    default: "0",
    note: "Multi-token-prediction layers (tensors model.layers.{num_hidden_layers}.* on): skipped on load, not rejected.",
  },
  // Norms, embeddings, tokens
  {
    key: "rms_norm_eps",
    handling: "mapped",
    field: "rmsNormEps",
    accepts: "positive number",
    default: "1e-6",
    note: "RMSNorm epsilon.",
  },
  {
    key: "tie_word_embeddings",
    handling: "mapped",
    field: "tieWordEmbeddings",
    accepts: "boolean",
    default: "false",
    note: "true: lm_head is embed_tokens (lm_head.weight may be absent).",
  },
  {
    key: "bos_token_id",
    handling: "mapped",
    field: "bosTokenId",
    accepts: "integer in [0, vocab_size) or null",
    default: "null",
    note: "Beginning-of-sequence token.",
  },
  {
    key: "eos_token_id",
    handling: "mapped",
    field: "eosTokenId, eosTokenIds",
    accepts: "integer in [0, vocab_size), a list of them, or null",
    default: "null",
    note: "End-of-sequence token(s); eosTokenId is the first.",
  },
  {
    key: "pad_token_id",
    handling: "ignored",
    accepts: "any",
    default: "-",
    note: "Batching pads nothing: sequences are ragged.",
  },
  {
    key: "initializer_range",
    handling: "ignored",
    accepts: "any",
    default: "-",
    note: "Training-time init std (the synthetic writer reads it from raw config).",
  },
  {
    key: "use_cache",
    handling: "ignored",
    accepts: "any",
    default: "-",
    note: "ExpertMesh always keeps a latent KV cache.",
  },
  {
    key: "pretraining_tp",
    handling: "ignored",
    accepts: "any",
    default: "-",
    note: "Unused by the DeepSeek-V3 modelling code.",
  },
  // Quantisation
  {
    key: "quantization_config",
    handling: "mapped",
    field: "weightBlockSize",
    accepts:
      '{"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [r, c]}',
    default: "null (no FP8)",
    note: "Block-scaled FP8 e4m3 weights with <name>_scale_inv, dequantised to float32 on load. Other methods (and static activation scales) are rejected.",
  },
] as const;

const BY_KEY: ReadonlyMap<string, ConfigKeyDoc> = new Map(CONFIG_KEYS.map((k) => [k.key, k]));

export function configKeyDoc(key: string): ConfigKeyDoc | undefined {
  return BY_KEY.get(key);
}

/** The markdown table docs/model-config.md embeds (between its `config-keys` markers). */
export function renderConfigKeyTable(): string {
  const esc = (s: string): string => s.replaceAll("|", "\\|");
  const rows = CONFIG_KEYS.map(
    (k) =>
      `| \`${k.key}\` | ${k.handling} | ${k.field === undefined ? "-" : esc(k.field)} | ${esc(k.accepts)} | ${esc(k.default)} | ${esc(k.note)} |`,
  );
  return [
    "| key | handling | ModelConfig field | accepted values | default | note |",
    "| --- | --- | --- | --- | --- | --- |",
    ...rows,
  ].join("\n");
}
