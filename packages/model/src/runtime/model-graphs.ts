/**
 * The ONNX graphs of one DeepSeek-V3 decoder step. Weights are graph INPUTS (fed by reference
 * on every run), so one compiled graph serves every layer of its kind. All graphs are batched
 * over the step's rows T (every new token of every sequence in the step).
 *
 * Names: H hidden, nh heads, dn qk_nope, dr qk_rope, dv v_head, C kv_lora, D = C + dr (a latent
 * KV row), Q q_lora, I dense intermediate, Is shared-expert intermediate, E routed experts, V vocab.
 */
import type { ModelConfig } from "../config/model-config.ts";
import { GraphBuilder } from "../onnx/graph-builder.ts";
import { linear, rmsNorm, ropeInterleaved, sliceAxis, swiglu } from "../onnx/graph-ops.ts";

export interface ModelDims {
  H: number;
  nh: number;
  dn: number;
  dr: number;
  dv: number;
  C: number;
  D: number;
  Q: number;
  I: number;
  Is: number;
  E: number;
  V: number;
  eps: number;
}

export function modelDims(c: ModelConfig): ModelDims {
  return {
    H: c.hiddenSize,
    nh: c.numHeads,
    dn: c.qkNopeHeadDim,
    dr: c.qkRopeHeadDim,
    dv: c.vHeadDim,
    C: c.kvLoraRank,
    D: c.kvLoraRank + c.qkRopeHeadDim,
    Q: c.qLoraRank,
    I: c.intermediateSize,
    Is: c.moeIntermediateSize * c.nSharedExperts,
    E: c.nRoutedExperts,
    V: c.vocabSize,
    eps: c.rmsNormEps,
  };
}

/** Weight input names of the attention-in graph (per layer). */
export const ATTN_IN_WEIGHTS = ["w_attn_norm", "w_q_a", "w_q_a_norm", "w_q_b", "w_kv_a", "w_kv_a_norm", "w_kb"] as const;

/**
 * (1) attention-in. Inputs x [T, H] (residual stream), cos/sin [T, 1, dr/2, 1] for each row's
 * position. Outputs q [T, nh, D] = [q_nope·W_kb (absorbed) | rotated q_pe] per head and
 * kv [T, D] = [kv_a_layernorm(latent) | rotated k_pe], the row the KV cache stores.
 */
export function attentionInGraph(d: ModelDims): Uint8Array {
  const b = new GraphBuilder("attention_in");
  const x = b.input("x", "float32", ["T", d.H]);
  const cos = b.input("cos", "float32", ["T", 1, d.dr / 2, 1]);
  const sin = b.input("sin", "float32", ["T", 1, d.dr / 2, 1]);
  const wNorm = b.input("w_attn_norm", "float32", [d.H]);
  const wQa = b.input("w_q_a", "float32", [d.Q, d.H]);
  const wQaNorm = b.input("w_q_a_norm", "float32", [d.Q]);
  const wQb = b.input("w_q_b", "float32", [d.nh * (d.dn + d.dr), d.Q]);
  const wKva = b.input("w_kv_a", "float32", [d.D, d.H]);
  const wKvaNorm = b.input("w_kv_a_norm", "float32", [d.C]);
  const wKb = b.input("w_kb", "float32", [d.nh, d.dn, d.C]); // kv_b_proj's k_nope rows per head

  const xn = rmsNorm(b, x, wNorm, d.eps);
  const qa = rmsNorm(b, linear(b, xn, wQa), wQaNorm, d.eps);
  const q = b.op("Reshape", [linear(b, qa, wQb), b.int64s([-1, d.nh, d.dn + d.dr])]); // [T, nh, dn+dr]
  const qNope = b.op("Transpose", [sliceAxis(b, q, 2, 0, d.dn)], { perm: [1, 0, 2] }); // [nh, T, dn]
  const qLatent = b.op("Transpose", [b.op("MatMul", [qNope, wKb])], { perm: [1, 0, 2] }); // [T, nh, C]
  const qPe = ropeInterleaved(b, sliceAxis(b, q, 2, d.dn, d.dn + d.dr), cos, sin, d.nh, d.dr); // [T, nh, dr]
  b.output(b.op("Concat", [qLatent, qPe], { axis: 2 }, { outputs: ["q"] }), "float32", ["T", d.nh, d.D]);

  const kv = linear(b, xn, wKva); // [T, C + dr]
  const latent = rmsNorm(b, sliceAxis(b, kv, 1, 0, d.C), wKvaNorm, d.eps);
  const kPe3 = b.op("Reshape", [sliceAxis(b, kv, 1, d.C, d.D), b.int64s([-1, 1, d.dr])]);
  const kPe = b.op("Reshape", [ropeInterleaved(b, kPe3, cos, sin, 1, d.dr), b.int64s([-1, d.dr])]);
  b.output(b.op("Concat", [latent, kPe], { axis: 1 }, { outputs: ["kv"] }), "float32", ["T", d.D]);
  return b.toBytes();
}

/**
 * Attention core over a padded batch of B sequences: q [B, M, D] (M = query rows × heads),
 * k [B, S, D] (each sequence's cached rows incl. the new ones), mask [B, M, S] (0 or a large
 * negative). Output o [B, M, D]: softmax((q·kᵀ)·scale + mask) · k; the first C columns are the
 * attention output in latent space (the last dr are unused).
 */
export function attentionCoreGraph(d: ModelDims, softmaxScale: number): Uint8Array {
  const b = new GraphBuilder("attention_core");
  const q = b.input("q", "float32", ["B", "M", d.D]);
  const k = b.input("k", "float32", ["B", "S", d.D]);
  const mask = b.input("mask", "float32", ["B", "M", "S"]);
  const scores = b.op("MatMul", [q, b.op("Transpose", [k], { perm: [0, 2, 1] })]); // [B, M, S]
  const p = b.op("Softmax", [b.op("Add", [b.op("Mul", [scores, b.scalar(softmaxScale)]), mask])], { axis: -1 });
  b.output(b.op("MatMul", [p, k], {}, { outputs: ["o"] }), "float32", ["B", "M", d.D]);
  return b.toBytes();
}

export const ATTN_OUT_WEIGHTS = ["w_vb", "w_o", "w_post_norm"] as const;
export const DENSE_MLP_WEIGHTS = ["w_gate", "w_up", "w_down"] as const;
export const MOE_WEIGHTS = ["w_router", "w_shared_gate", "w_shared_up", "w_shared_down"] as const;

/**
 * (2) attention-out + the token-local part of the FFN. Inputs o [T, nh, D] (attention output in
 * latent space), x [T, H] (residual). h = x + o_proj(o·W_vb per head); hn = post_attention_layernorm(h).
 * dense: output h_out = h + SwiGLU(hn).
 * moe:   outputs h [T, H], hn [T, H] (the router input), router_logits [T, E], shared [T, H].
 */
export function attentionOutGraph(d: ModelDims, kind: "dense" | "moe"): Uint8Array {
  const b = new GraphBuilder(`attention_out_${kind}`);
  const o = b.input("o", "float32", ["T", d.nh, d.D]);
  const x = b.input("x", "float32", ["T", d.H]);
  const wVb = b.input("w_vb", "float32", [d.nh, d.C, d.dv]); // kv_b_proj's v rows per head, transposed
  const wO = b.input("w_o", "float32", [d.H, d.nh * d.dv]);
  const wPost = b.input("w_post_norm", "float32", [d.H]);

  const oLat = b.op("Transpose", [sliceAxis(b, o, 2, 0, d.C)], { perm: [1, 0, 2] }); // [nh, T, C]
  const v = b.op("Transpose", [b.op("MatMul", [oLat, wVb])], { perm: [1, 0, 2] }); // [T, nh, dv]
  const attn = linear(b, b.op("Reshape", [v, b.int64s([-1, d.nh * d.dv])]), wO);
  if (kind === "dense") {
    const h = b.op("Add", [x, attn]);
    const hn = rmsNorm(b, h, wPost, d.eps);
    const wGate = b.input("w_gate", "float32", [d.I, d.H]);
    const wUp = b.input("w_up", "float32", [d.I, d.H]);
    const wDown = b.input("w_down", "float32", [d.H, d.I]);
    b.output(b.op("Add", [h, swiglu(b, hn, wGate, wUp, wDown)], {}, { outputs: ["h_out"] }), "float32", ["T", d.H]);
    return b.toBytes();
  }
  const h = b.op("Add", [x, attn], {}, { outputs: ["h"] });
  const hn = b.op("Identity", [rmsNorm(b, h, wPost, d.eps)], {}, { outputs: ["hn"] });
  const wRouter = b.input("w_router", "float32", [d.E, d.H]);
  const wSg = b.input("w_shared_gate", "float32", [d.Is, d.H]);
  const wSu = b.input("w_shared_up", "float32", [d.Is, d.H]);
  const wSd = b.input("w_shared_down", "float32", [d.H, d.Is]);
  b.output(h, "float32", ["T", d.H]);
  b.output(hn, "float32", ["T", d.H]);
  b.output(b.op("Identity", [linear(b, hn, wRouter)], {}, { outputs: ["router_logits"] }), "float32", ["T", d.E]);
  b.output(b.op("Identity", [swiglu(b, hn, wSg, wSu, wSd)], {}, { outputs: ["shared"] }), "float32", ["T", d.H]);
  return b.toBytes();
}

/** (5) final norm + lm_head: x [R, H] → logits [R, V]. */
export function finalGraph(d: ModelDims): Uint8Array {
  const b = new GraphBuilder("final");
  const x = b.input("x", "float32", ["R", d.H]);
  const wNorm = b.input("w_norm", "float32", [d.H]);
  const wHead = b.input("w_lm_head", "float32", [d.V, d.H]);
  b.output(b.op("Identity", [linear(b, rmsNorm(b, x, wNorm, d.eps), wHead)], {}, { outputs: ["logits"] }), "float32", ["R", d.V]);
  return b.toBytes();
}
