/**
 * Hugging Face config.json objects of the synthetic-model presets.
 * - tiny:  the shape of the tiny-v3 test fixture (shared/fixtures/tiny-v3/config.json).
 * - small: in between: hidden 256, 4 layers (1 dense + 3 MoE), 64 experts.
 * - bench: exactly shared/bench/perf-v3.config.json, the model ExpertMesh is benchmarked on.
 */

export type PresetName = "tiny" | "small" | "bench";
export const PRESET_NAMES: readonly PresetName[] = ["tiny", "small", "bench"];

/** Keys every preset shares with the real DeepSeek-V3 config. */
const V3_COMMON = {
  architectures: ["DeepseekV3ForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 0,
  eos_token_id: 1,
  ep_size: 1,
  first_k_dense_replace: 1,
  hidden_act: "silu",
  initializer_range: 0.02,
  model_type: "deepseek_v3",
  moe_layer_freq: 1,
  n_shared_experts: 1,
  norm_topk_prob: true,
  num_experts_per_tok: 8,
  num_nextn_predict_layers: 0,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  routed_scaling_factor: 2.5,
  scoring_func: "sigmoid",
  tie_word_embeddings: false,
  topk_method: "noaux_tc",
  torch_dtype: "bfloat16",
  use_cache: true,
} as const;

function yarn(originalMaxPositionEmbeddings: number): Record<string, unknown> {
  return {
    beta_fast: 32,
    beta_slow: 1,
    factor: 40,
    mscale: 1.0,
    mscale_all_dim: 1.0,
    original_max_position_embeddings: originalMaxPositionEmbeddings,
    type: "yarn",
  };
}

export const PRESETS: Readonly<Record<PresetName, Readonly<Record<string, unknown>>>> = {
  tiny: {
    ...V3_COMMON,
    hidden_size: 64,
    intermediate_size: 128,
    kv_lora_rank: 32,
    max_position_embeddings: 2560,
    moe_intermediate_size: 32,
    n_group: 8,
    n_routed_experts: 256,
    num_attention_heads: 4,
    num_hidden_layers: 4,
    num_key_value_heads: 4,
    q_lora_rank: 48,
    qk_nope_head_dim: 16,
    qk_rope_head_dim: 8,
    rope_scaling: yarn(64),
    topk_group: 4,
    v_head_dim: 16,
    vocab_size: 512,
  },
  small: {
    ...V3_COMMON,
    hidden_size: 256,
    intermediate_size: 768,
    kv_lora_rank: 64,
    max_position_embeddings: 16384,
    moe_intermediate_size: 64,
    n_group: 8,
    n_routed_experts: 64,
    num_attention_heads: 4,
    num_hidden_layers: 4,
    num_key_value_heads: 4,
    q_lora_rank: 96,
    qk_nope_head_dim: 32,
    qk_rope_head_dim: 16,
    rope_scaling: yarn(512),
    topk_group: 4,
    v_head_dim: 32,
    vocab_size: 2048,
  },
  bench: {
    ...V3_COMMON,
    hidden_size: 512,
    intermediate_size: 1536,
    kv_lora_rank: 128,
    max_position_embeddings: 163840,
    moe_intermediate_size: 128,
    n_group: 8,
    n_routed_experts: 256,
    num_attention_heads: 8,
    num_hidden_layers: 6,
    num_key_value_heads: 8,
    q_lora_rank: 192,
    qk_nope_head_dim: 32,
    qk_rope_head_dim: 16,
    rope_scaling: yarn(4096),
    topk_group: 4,
    v_head_dim: 32,
    vocab_size: 8192,
  },
};
