/**
 * config.json → validated, fully-defaulted ModelConfig. Keys and their rules are listed in
 * config-keys.ts; anything the math does not implement is rejected here, at startup, with a
 * message naming the key and the value.
 */
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { configKeyDoc } from "./config-keys.ts";
import type { ModelConfig, YarnScaling } from "./model-config.ts";

export interface ParsedModelConfig {
  config: ModelConfig;
  /** One line per unknown key (ignored: HF configs grow keys over time). */
  warnings: string[];
}

type Raw = Readonly<Record<string, unknown>>;

/** Parses and validates a config.json object; `source` (usually its path) prefixes every message. */
export function parseModelConfig(raw: unknown, source: string): ModelConfig {
  return parseModelConfigWithWarnings(raw, source).config;
}

export function parseModelConfigWithWarnings(raw: unknown, source: string): ParsedModelConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ExpertMeshError(Code.INVALID_ARGUMENT, `${source}: config must be a JSON object`);
  }
  const r = raw as Raw;
  const p = new KeyReader(r, source);

  const modelType = r["model_type"];
  if (modelType !== "deepseek_v3") {
    throw p.reject("model_type", modelType, 'only "deepseek_v3" is supported');
  }

  const vocabSize = p.positiveInt("vocab_size");
  const hiddenSize = p.positiveInt("hidden_size");
  const numLayers = p.positiveInt("num_hidden_layers");
  const numHeads = p.positiveInt("num_attention_heads");
  if (r["q_lora_rank"] === null) {
    throw p.reject("q_lora_rank", null, "a direct q_proj (no query LoRA) is not implemented");
  }
  const qkRopeHeadDim = p.positiveInt("qk_rope_head_dim");
  if (qkRopeHeadDim % 2 !== 0)
    throw p.reject("qk_rope_head_dim", qkRopeHeadDim, "RoPE needs an even number of dims");

  const kvHeads = r["num_key_value_heads"];
  if (kvHeads !== undefined && kvHeads !== null && kvHeads !== numHeads) {
    throw p.reject("num_key_value_heads", kvHeads, `MLA needs it equal to num_attention_heads (${numHeads})`);
  }
  p.expectValue("attention_bias", false, false);
  p.expectValue("rope_interleave", true, true);
  p.expectValue("moe_layer_freq", 1, 1);
  p.expectValue("scoring_func", "sigmoid", "sigmoid");
  p.expectValue("topk_method", "noaux_tc", "noaux_tc");
  p.expectValue("norm_topk_prob", true, true);
  p.expectValue("hidden_act", "silu", "silu");

  if (r["n_routed_experts"] === null) {
    throw p.reject("n_routed_experts", null, "a dense model (no routed experts) is not this architecture");
  }
  const nRoutedExperts = p.positiveInt("n_routed_experts");
  const nShared = r["n_shared_experts"];
  if (nShared === null || nShared === 0) {
    throw p.reject("n_shared_experts", nShared, "models without a shared expert are not implemented");
  }
  const nSharedExperts = p.positiveInt("n_shared_experts", 1);
  const nGroup = p.positiveInt("n_group");
  if (nRoutedExperts % nGroup !== 0) {
    throw p.reject("n_group", nGroup, `must divide n_routed_experts (${nRoutedExperts})`);
  }
  const perGroup = nRoutedExperts / nGroup;
  if (perGroup < 2) throw p.reject("n_group", nGroup, "group scores need at least 2 experts per group");
  const topkGroup = p.positiveInt("topk_group");
  if (topkGroup > nGroup) throw p.reject("topk_group", topkGroup, `must be at most n_group (${nGroup})`);
  const numExpertsPerTok = p.positiveInt("num_experts_per_tok");
  if (numExpertsPerTok > topkGroup * perGroup) {
    throw p.reject(
      "num_experts_per_tok",
      numExpertsPerTok,
      `must be at most topk_group × experts per group (${topkGroup * perGroup})`,
    );
  }
  const firstKDenseReplace = p.nonNegativeInt("first_k_dense_replace");
  if (firstKDenseReplace > numLayers) {
    throw p.reject(
      "first_k_dense_replace",
      firstKDenseReplace,
      `must be at most num_hidden_layers (${numLayers})`,
    );
  }
  const moeIntermediateSize = p.positiveInt("moe_intermediate_size");

  const maxPositionEmbeddings = p.positiveInt("max_position_embeddings", 4096);
  const { ropeTheta, ropeScaling } = parseRope(r, p);

  const bosTokenId = p.tokenId("bos_token_id", vocabSize);
  const eosTokenIds = p.tokenIds("eos_token_id", vocabSize);

  const config: ModelConfig = {
    vocabSize,
    hiddenSize,
    numLayers,
    firstKDenseReplace,
    intermediateSize: p.positiveInt("intermediate_size"),
    moeIntermediateSize,
    numHeads,
    qLoraRank: p.positiveInt("q_lora_rank"),
    kvLoraRank: p.positiveInt("kv_lora_rank"),
    qkNopeHeadDim: p.positiveInt("qk_nope_head_dim"),
    qkRopeHeadDim,
    vHeadDim: p.positiveInt("v_head_dim"),
    nRoutedExperts,
    nSharedExperts,
    sharedIntermediateSize: moeIntermediateSize * nSharedExperts,
    numExpertsPerTok,
    nGroup,
    topkGroup,
    routedScalingFactor: p.positiveNumber("routed_scaling_factor"),
    rmsNormEps: p.positiveNumber("rms_norm_eps", 1e-6),
    ropeTheta,
    ropeScaling,
    maxPositionEmbeddings,
    tieWordEmbeddings: p.boolean("tie_word_embeddings", false),
    bosTokenId,
    eosTokenId: eosTokenIds[0] ?? null,
    eosTokenIds,
    numNextnPredictLayers: p.nonNegativeInt("num_nextn_predict_layers", 0),
    weightBlockSize: parseQuantization(r, p),
  };

  const warnings = Object.keys(r)
    .filter((k) => configKeyDoc(k) === undefined)
    .map((k) => `${source}: unknown config key "${k}" ignored`);
  return { config, warnings };
}

function parseRope(r: Raw, p: KeyReader): { ropeTheta: number; ropeScaling: YarnScaling | null } {
  const scaling = r["rope_scaling"];
  const params = r["rope_parameters"];
  if (scaling === undefined && params !== undefined && params !== null) {
    // transformers v5: rope_theta and the scaling live together in rope_parameters.
    const obj = p.object("rope_parameters", params);
    const sub = new KeyReader(obj, p.source, "rope_parameters.");
    const theta =
      r["rope_theta"] !== undefined
        ? p.positiveNumber("rope_theta")
        : sub.positiveNumber("rope_theta", 10000);
    const type = obj["rope_type"] ?? obj["type"] ?? "default";
    if (type === "default") return { ropeTheta: theta, ropeScaling: null };
    return { ropeTheta: theta, ropeScaling: parseYarn(obj, sub, "rope_parameters") };
  }
  const ropeTheta = p.positiveNumber("rope_theta", 10000);
  if (scaling === undefined || scaling === null) return { ropeTheta, ropeScaling: null };
  const obj = p.object("rope_scaling", scaling);
  return {
    ropeTheta,
    ropeScaling: parseYarn(obj, new KeyReader(obj, p.source, "rope_scaling."), "rope_scaling"),
  };
}

function parseYarn(obj: Raw, sub: KeyReader, key: string): YarnScaling {
  const type = obj["type"] ?? obj["rope_type"];
  if (type !== "yarn") {
    throw new ExpertMeshError(
      Code.INVALID_ARGUMENT,
      `${sub.source}: config key "${key}.type" = ${show(type)} is not supported: only "yarn" RoPE scaling is implemented`,
      { details: { key: `${key}.type` } },
    );
  }
  // Defaults follow DeepSeek's reference ModelArgs (inference/model.py).
  return {
    factor: sub.positiveNumber("factor", 40),
    originalMaxPositionEmbeddings: sub.positiveInt("original_max_position_embeddings", 4096),
    betaFast: sub.positiveNumber("beta_fast", 32),
    betaSlow: sub.positiveNumber("beta_slow", 1),
    mscale: sub.nonNegativeNumber("mscale", 1),
    mscaleAllDim: sub.nonNegativeNumber("mscale_all_dim", 1),
  };
}

function parseQuantization(r: Raw, p: KeyReader): readonly [number, number] | null {
  const q = r["quantization_config"];
  if (q === undefined || q === null) return null;
  const obj = p.object("quantization_config", q);
  const sub = new KeyReader(obj, p.source, "quantization_config.");
  sub.expectValue("quant_method", "fp8", undefined);
  sub.expectValue("fmt", "e4m3", "e4m3");
  sub.expectValue("activation_scheme", "dynamic", "dynamic");
  const block = obj["weight_block_size"];
  if (block === undefined || block === null) return [128, 128];
  if (
    !Array.isArray(block) ||
    block.length !== 2 ||
    !block.every((v) => Number.isInteger(v) && (v as number) > 0)
  ) {
    throw sub.reject("weight_block_size", block, "expected [rows, cols] of positive integers");
  }
  return [block[0] as number, block[1] as number];
}

function show(v: unknown): string {
  return v === undefined ? "undefined" : JSON.stringify(v);
}

/** Typed access to one config object; every failure names `<prefix><key>` and the value. */
class KeyReader {
  constructor(
    private readonly raw: Raw,
    readonly source: string,
    private readonly prefix = "",
  ) {}

  reject(key: string, value: unknown, why: string): ExpertMeshError {
    const name = this.prefix + key;
    return new ExpertMeshError(
      Code.INVALID_ARGUMENT,
      `${this.source}: config key "${name}" = ${show(value)} is not supported: ${why}`,
      {
        details: { key: name },
      },
    );
  }

  private value(key: string, fallback: unknown): unknown {
    const v = this.raw[key];
    if (v !== undefined) return v;
    if (fallback === undefined) {
      throw new ExpertMeshError(
        Code.INVALID_ARGUMENT,
        `${this.source}: config key "${this.prefix + key}" is required`,
        {
          details: { key: this.prefix + key },
        },
      );
    }
    return fallback;
  }

  /** The key must hold `want` (or be absent when `fallback` is given). */
  expectValue(key: string, want: unknown, fallback: unknown): void {
    const v = this.value(key, fallback);
    if (v !== want) throw this.reject(key, v, `only ${show(want)} is implemented`);
  }

  positiveInt(key: string, fallback?: number): number {
    const v = this.value(key, fallback);
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0)
      throw this.reject(key, v, "expected a positive integer");
    return v;
  }

  nonNegativeInt(key: string, fallback?: number): number {
    const v = this.value(key, fallback);
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0)
      throw this.reject(key, v, "expected a non-negative integer");
    return v;
  }

  positiveNumber(key: string, fallback?: number): number {
    const v = this.value(key, fallback);
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0)
      throw this.reject(key, v, "expected a positive number");
    return v;
  }

  nonNegativeNumber(key: string, fallback?: number): number {
    const v = this.value(key, fallback);
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0)
      throw this.reject(key, v, "expected a non-negative number");
    return v;
  }

  boolean(key: string, fallback: boolean): boolean {
    const v = this.value(key, fallback);
    if (typeof v !== "boolean") throw this.reject(key, v, "expected true or false");
    return v;
  }

  object(key: string, v: unknown): Raw {
    if (typeof v !== "object" || v === null || Array.isArray(v))
      throw this.reject(key, v, "expected an object");
    return v as Raw;
  }

  tokenId(key: string, vocabSize: number): number | null {
    const v = this.raw[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v >= vocabSize) {
      throw this.reject(key, v, `expected a token id in [0, ${vocabSize})`);
    }
    return v;
  }

  tokenIds(key: string, vocabSize: number): number[] {
    const v = this.raw[key];
    if (v === undefined || v === null) return [];
    const list: unknown[] = Array.isArray(v) ? v : [v];
    for (const id of list) {
      if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw this.reject(key, v, `expected token ids in [0, ${vocabSize})`);
      }
    }
    return list as number[];
  }
}
