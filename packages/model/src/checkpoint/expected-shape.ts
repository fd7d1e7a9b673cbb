/**
 * The tensors a DeepSeek-V3 checkpoint holds for a given config, with their shapes
 * (Hugging Face names; Linear weights are [out_features, in_features]).
 */
import type { ModelConfig } from "../config/model-config.ts";

/** Main-model layer index of a `model.layers.N.…` name, else undefined. */
export function layerIndexOf(name: string): number | undefined {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  return m === null ? undefined : Number(m[1]);
}

/**
 * Whether the real V3 release stores this tensor as FP8 (with `<name>_scale_inv`): every
 * Linear weight except the router (mlp.gate), embed_tokens and lm_head.
 */
export function isFp8Linear(name: string): boolean {
  return /^model\.layers\.\d+\.(self_attn\.(q_a_proj|q_b_proj|kv_a_proj_with_mqa|kv_b_proj|o_proj)|mlp\.((experts\.\d+|shared_experts)\.)?(gate_proj|up_proj|down_proj))\.weight$/.test(
    name,
  );
}

/** Expected shape of a known tensor, or undefined for a name this architecture does not define. */
export function expectedShape(name: string, c: ModelConfig): number[] | undefined {
  const H = c.hiddenSize;
  switch (name) {
    case "model.embed_tokens.weight":
    case "lm_head.weight":
      return [c.vocabSize, H]; // [vocab, hidden]
    case "model.norm.weight":
      return [H];
  }
  const layer = layerIndexOf(name);
  if (layer === undefined || layer >= c.numLayers) return undefined;
  const rest = name.slice(`model.layers.${layer}.`.length);
  const qkHead = c.qkNopeHeadDim + c.qkRopeHeadDim;
  switch (rest) {
    case "input_layernorm.weight":
    case "post_attention_layernorm.weight":
      return [H];
    case "self_attn.q_a_proj.weight":
      return [c.qLoraRank, H];
    case "self_attn.q_a_layernorm.weight":
      return [c.qLoraRank];
    case "self_attn.q_b_proj.weight":
      return [c.numHeads * qkHead, c.qLoraRank]; // per head [q_nope | q_pe]
    case "self_attn.kv_a_proj_with_mqa.weight":
      return [c.kvLoraRank + c.qkRopeHeadDim, H]; // [latent | k_pe]
    case "self_attn.kv_a_layernorm.weight":
      return [c.kvLoraRank];
    case "self_attn.kv_b_proj.weight":
      return [c.numHeads * (c.qkNopeHeadDim + c.vHeadDim), c.kvLoraRank]; // per head [k_nope | v]
    case "self_attn.o_proj.weight":
      return [H, c.numHeads * c.vHeadDim];
  }
  const dense = layer < c.firstKDenseReplace;
  if (dense) {
    if (rest === "mlp.gate_proj.weight" || rest === "mlp.up_proj.weight") return [c.intermediateSize, H];
    if (rest === "mlp.down_proj.weight") return [H, c.intermediateSize];
    return undefined;
  }
  switch (rest) {
    case "mlp.gate.weight":
      return [c.nRoutedExperts, H];
    case "mlp.gate.e_score_correction_bias":
      return [c.nRoutedExperts];
    case "mlp.shared_experts.gate_proj.weight":
    case "mlp.shared_experts.up_proj.weight":
      return [c.sharedIntermediateSize, H];
    case "mlp.shared_experts.down_proj.weight":
      return [H, c.sharedIntermediateSize];
  }
  const m = /^mlp\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$/.exec(rest);
  if (m === null || Number(m[1]) >= c.nRoutedExperts) return undefined;
  return m[2] === "down_proj" ? [H, c.moeIntermediateSize] : [c.moeIntermediateSize, H];
}

/** Every tensor the model needs, in model order (lm_head omitted when tied to embed_tokens). */
export function expectedTensorNames(c: ModelConfig): string[] {
  const names = ["model.embed_tokens.weight"];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    names.push(`${p}input_layernorm.weight`);
    for (const t of [
      "q_a_proj",
      "q_a_layernorm",
      "q_b_proj",
      "kv_a_proj_with_mqa",
      "kv_a_layernorm",
      "kv_b_proj",
      "o_proj",
    ]) {
      names.push(`${p}self_attn.${t}.weight`);
    }
    names.push(`${p}post_attention_layernorm.weight`);
    if (l < c.firstKDenseReplace) {
      for (const t of ["gate_proj", "up_proj", "down_proj"]) names.push(`${p}mlp.${t}.weight`);
      continue;
    }
    names.push(`${p}mlp.gate.weight`, `${p}mlp.gate.e_score_correction_bias`);
    for (let e = 0; e < c.nRoutedExperts; e++) {
      for (const t of ["gate_proj", "up_proj", "down_proj"]) names.push(`${p}mlp.experts.${e}.${t}.weight`);
    }
    for (const t of ["gate_proj", "up_proj", "down_proj"]) names.push(`${p}mlp.shared_experts.${t}.weight`);
  }
  names.push("model.norm.weight");
  if (!c.tieWordEmbeddings) names.push("lm_head.weight");
  return names;
}
