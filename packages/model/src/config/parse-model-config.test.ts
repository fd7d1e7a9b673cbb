import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { CONFIG_KEYS } from "./config-keys.ts";
import { parseModelConfig, parseModelConfigWithWarnings } from "./parse-model-config.ts";

const TINY = JSON.parse(readFileSync("/work/shared/fixtures/tiny-v3/config.json", "utf8")) as Record<
  string,
  unknown
>;
const FP8 = JSON.parse(readFileSync("/work/shared/fixtures/tiny-v3-fp8/config.json", "utf8")) as Record<
  string,
  unknown
>;

function rejects(raw: Record<string, unknown>, key: string, value: string): void {
  assert.throws(
    () => parseModelConfig(raw, "test/config.json"),
    (err: unknown) => {
      assert.ok(err instanceof ExpertMeshError, String(err));
      assert.equal(err.code, Code.INVALID_ARGUMENT);
      assert.ok(err.message.startsWith("test/config.json: "), err.message);
      assert.ok(err.message.includes(`config key "${key}" = ${value}`), err.message);
      assert.equal(err.details["key"], key);
      return true;
    },
  );
}

describe("parseModelConfig", () => {
  test("tiny-v3 fixture maps every field", () => {
    const { config, warnings } = parseModelConfigWithWarnings(TINY, "tiny");
    assert.deepEqual(warnings, []);
    assert.deepEqual(config, {
      vocabSize: 512,
      hiddenSize: 64,
      numLayers: 4,
      firstKDenseReplace: 1,
      intermediateSize: 128,
      moeIntermediateSize: 32,
      numHeads: 4,
      qLoraRank: 48,
      kvLoraRank: 32,
      qkNopeHeadDim: 16,
      qkRopeHeadDim: 8,
      vHeadDim: 16,
      nRoutedExperts: 256,
      nSharedExperts: 1,
      sharedIntermediateSize: 32,
      numExpertsPerTok: 8,
      nGroup: 8,
      topkGroup: 4,
      routedScalingFactor: 2.5,
      rmsNormEps: 1e-6,
      ropeTheta: 10000,
      ropeScaling: {
        factor: 40,
        originalMaxPositionEmbeddings: 64,
        betaFast: 32,
        betaSlow: 1,
        mscale: 1,
        mscaleAllDim: 1,
      },
      maxPositionEmbeddings: 2560,
      tieWordEmbeddings: false,
      bosTokenId: 0,
      eosTokenId: 1,
      eosTokenIds: [1],
      numNextnPredictLayers: 0,
      weightBlockSize: null,
    });
  });

  test("the real DeepSeek-V3 (671B) config.json parses with no warning", () => {
    const v3 = {
      architectures: ["DeepseekV3ForCausalLM"],
      attention_bias: false,
      attention_dropout: 0.0,
      auto_map: {
        AutoConfig: "configuration_deepseek.DeepseekV3Config",
        AutoModel: "modeling_deepseek.DeepseekV3Model",
        AutoModelForCausalLM: "modeling_deepseek.DeepseekV3ForCausalLM",
      },
      aux_loss_alpha: 0.001,
      bos_token_id: 0,
      eos_token_id: 1,
      ep_size: 1,
      first_k_dense_replace: 3,
      hidden_act: "silu",
      hidden_size: 7168,
      initializer_range: 0.02,
      intermediate_size: 18432,
      kv_lora_rank: 512,
      max_position_embeddings: 163840,
      model_type: "deepseek_v3",
      moe_intermediate_size: 2048,
      moe_layer_freq: 1,
      n_group: 8,
      n_routed_experts: 256,
      n_shared_experts: 1,
      norm_topk_prob: true,
      num_attention_heads: 128,
      num_experts_per_tok: 8,
      num_hidden_layers: 61,
      num_key_value_heads: 128,
      num_nextn_predict_layers: 1,
      pretraining_tp: 1,
      q_lora_rank: 1536,
      qk_nope_head_dim: 128,
      qk_rope_head_dim: 64,
      quantization_config: {
        activation_scheme: "dynamic",
        fmt: "e4m3",
        quant_method: "fp8",
        weight_block_size: [128, 128],
      },
      rms_norm_eps: 1e-6,
      rope_scaling: {
        beta_fast: 32,
        beta_slow: 1,
        factor: 40,
        mscale: 1.0,
        mscale_all_dim: 1.0,
        original_max_position_embeddings: 4096,
        type: "yarn",
      },
      rope_theta: 10000,
      routed_scaling_factor: 2.5,
      scoring_func: "sigmoid",
      seq_aux: true,
      tie_word_embeddings: false,
      topk_group: 4,
      topk_method: "noaux_tc",
      torch_dtype: "bfloat16",
      transformers_version: "4.33.1",
      use_cache: true,
      v_head_dim: 128,
      vocab_size: 129280,
    };
    const { config, warnings } = parseModelConfigWithWarnings(v3, "v3");
    assert.deepEqual(warnings, []);
    assert.equal(config.numLayers, 61);
    assert.equal(config.numNextnPredictLayers, 1);
    assert.deepEqual(config.weightBlockSize, [128, 128]);
  });

  test("FP8 quantization_config gives the block size", () => {
    assert.deepEqual(parseModelConfig(FP8, "fp8").weightBlockSize, [128, 128]);
    const { weight_block_size: _drop, ...noBlock } = FP8["quantization_config"] as Record<string, unknown>;
    assert.deepEqual(
      parseModelConfig({ ...FP8, quantization_config: noBlock }, "fp8").weightBlockSize,
      [128, 128],
    );
  });

  test("defaults: behaviour keys, YaRN fields, no rope_scaling, MTP, eos list", () => {
    const raw = { ...TINY };
    for (const k of [
      "scoring_func",
      "topk_method",
      "norm_topk_prob",
      "hidden_act",
      "attention_bias",
      "moe_layer_freq",
      "n_shared_experts",
      "num_key_value_heads",
      "num_nextn_predict_layers",
    ])
      delete raw[k];
    raw["rope_scaling"] = { type: "yarn", factor: 8 };
    raw["eos_token_id"] = [1, 2];
    raw["n_shared_experts"] = 2;
    const c = parseModelConfig(raw, "x");
    assert.deepEqual(c.ropeScaling, {
      factor: 8,
      originalMaxPositionEmbeddings: 4096,
      betaFast: 32,
      betaSlow: 1,
      mscale: 1,
      mscaleAllDim: 1,
    });
    assert.equal(c.nSharedExperts, 2);
    assert.equal(c.sharedIntermediateSize, 64);
    assert.equal(c.eosTokenId, 1);
    assert.deepEqual(c.eosTokenIds, [1, 2]);
    assert.equal(c.numNextnPredictLayers, 0);
    assert.equal(parseModelConfig({ ...TINY, rope_scaling: null }, "x").ropeScaling, null);
    assert.equal(parseModelConfig({ ...TINY, num_nextn_predict_layers: 1 }, "x").numNextnPredictLayers, 1);
  });

  test("transformers v5 rope_parameters", () => {
    const { rope_scaling: _a, rope_theta: _b, ...raw } = TINY;
    const c = parseModelConfig(
      {
        ...raw,
        rope_parameters: {
          rope_type: "yarn",
          rope_theta: 50000,
          factor: 4,
          original_max_position_embeddings: 128,
        },
      },
      "x",
    );
    assert.equal(c.ropeTheta, 50000);
    assert.equal(c.ropeScaling?.factor, 4);
    assert.equal(c.ropeScaling?.originalMaxPositionEmbeddings, 128);
    assert.equal(
      parseModelConfig({ ...raw, rope_parameters: { rope_type: "default", rope_theta: 500 } }, "x")
        .ropeScaling,
      null,
    );
  });

  test("unknown keys are ignored with a warning each", () => {
    const { warnings } = parseModelConfigWithWarnings({ ...TINY, brand_new_key: true, other: 1 }, "cfg");
    assert.deepEqual(warnings, [
      'cfg: unknown config key "brand_new_key" ignored',
      'cfg: unknown config key "other" ignored',
    ]);
  });

  test("ignored keys produce no warning, whatever their value", () => {
    const raw: Record<string, unknown> = { ...TINY };
    for (const k of CONFIG_KEYS.filter((k) => k.handling === "ignored")) raw[k.key] = { anything: [1, "x"] };
    assert.deepEqual(parseModelConfigWithWarnings(raw, "x").warnings, []);
  });

  describe("rejected values name the key and the value", () => {
    const cases: Array<[string, Record<string, unknown>, string, string]> = [
      ["model_type", { model_type: "deepseek_v2" }, "model_type", '"deepseek_v2"'],
      ["q_lora_rank null", { q_lora_rank: null }, "q_lora_rank", "null"],
      ["moe_layer_freq", { moe_layer_freq: 2 }, "moe_layer_freq", "2"],
      ["scoring_func", { scoring_func: "softmax" }, "scoring_func", '"softmax"'],
      ["topk_method", { topk_method: "group_limited_greedy" }, "topk_method", '"group_limited_greedy"'],
      ["hidden_act", { hidden_act: "gelu" }, "hidden_act", '"gelu"'],
      ["attention_bias", { attention_bias: true }, "attention_bias", "true"],
      ["norm_topk_prob", { norm_topk_prob: false }, "norm_topk_prob", "false"],
      ["n_shared_experts 0", { n_shared_experts: 0 }, "n_shared_experts", "0"],
      ["n_shared_experts null", { n_shared_experts: null }, "n_shared_experts", "null"],
      ["n_routed_experts null", { n_routed_experts: null }, "n_routed_experts", "null"],
      ["rope_scaling.type", { rope_scaling: { type: "linear", factor: 2 } }, "rope_scaling.type", '"linear"'],
      ["rope_interleave", { rope_interleave: false }, "rope_interleave", "false"],
      ["num_key_value_heads", { num_key_value_heads: 1 }, "num_key_value_heads", "1"],
      [
        "quant_method",
        { quantization_config: { quant_method: "awq" } },
        "quantization_config.quant_method",
        '"awq"',
      ],
      [
        "fp8 fmt",
        { quantization_config: { quant_method: "fp8", fmt: "e5m2" } },
        "quantization_config.fmt",
        '"e5m2"',
      ],
      [
        "activation_scheme",
        { quantization_config: { quant_method: "fp8", activation_scheme: "static" } },
        "quantization_config.activation_scheme",
        '"static"',
      ],
      [
        "weight_block_size",
        { quantization_config: { quant_method: "fp8", weight_block_size: [128] } },
        "quantization_config.weight_block_size",
        "[128]",
      ],
      ["n_group not dividing", { n_group: 7 }, "n_group", "7"],
      ["topk_group > n_group", { topk_group: 9 }, "topk_group", "9"],
      ["num_experts_per_tok too many", { num_experts_per_tok: 129 }, "num_experts_per_tok", "129"],
      ["first_k_dense_replace", { first_k_dense_replace: 5 }, "first_k_dense_replace", "5"],
      ["odd rope dim", { qk_rope_head_dim: 7 }, "qk_rope_head_dim", "7"],
      ["hidden_size string", { hidden_size: "64" }, "hidden_size", '"64"'],
      ["bos out of vocab", { bos_token_id: 512 }, "bos_token_id", "512"],
    ];
    for (const [title, patch, key, value] of cases) {
      test(title, () => rejects({ ...TINY, ...patch }, key, value));
    }
  });

  test("missing required keys are named", () => {
    const { hidden_size: _h, ...raw } = TINY;
    assert.throws(() => parseModelConfig(raw, "c"), /c: config key "hidden_size" is required/);
    assert.throws(() => parseModelConfig([], "c"), /c: config must be a JSON object/);
  });
});
