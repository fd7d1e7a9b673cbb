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

/**
 * One decoder layer for one attention group of B sequences × Tq new tokens (T = B·Tq rows,
 * ordered [b, t]), everything but the routed experts:
 *   x = h_base + (h_routed + h_shared)                      (previous layer's residual parts)
 *   MLA attention-in: q [T, nh, D] = [q_nope·W_kb (absorbed) | rope(q_pe)], kv [T, D] =
 *     [kv_a_layernorm(latent) | rope(k_pe)] — the row the KV cache stores (output `kv`);
 *   attention over [cached rows k_past [B, Sp, D] | the new rows]: scores = q·kᵀ · scale + mask
 *     (mask [B, Tq·nh, Sp + Tq]: 0 or a large negative), softmax, o = p · k (latent part);
 *   attention-out: h = x + o_proj(o·W_vb per head); hn = post_attention_layernorm(h);
 *   dense: h_out = h + SwiGLU(hn);
 *   moe:   h, hn (router input), scores = sigmoid(hn · gateᵀ), shared = shared expert(hn).
 * Keys are never concatenated (no copy of the context): the two score blocks are.
 */
export function layerGraph(d: ModelDims, kind: "dense" | "moe", softmaxScale: number): Uint8Array {
  const b = new GraphBuilder(`layer_${kind}`);
  const x = residualInput(b, d, "x");
  const cos = b.input("cos", "float32", ["T", 1, d.dr]);
  const sin = b.input("sin", "float32", ["T", 1, d.dr]);
  const kPast = b.input("k_past", "float32", ["B", "Sp", d.D]);
  const mask = b.input("mask", "float32", ["B", "M", "S"]);
  const w = (name: string, dims: number[]): string => b.input(name, "float32", dims);

  // attention-in
  const xn = rmsNorm(b, x, w("w_attn_norm", [d.H]), d.eps);
  const qa = rmsNorm(b, linear(b, xn, w("w_q_a", [d.Q, d.H])), w("w_q_a_norm", [d.Q]), d.eps);
  const q = b.op("Reshape", [
    linear(b, qa, w("w_q_b", [d.nh * (d.dn + d.dr), d.Q])),
    b.int64s([-1, d.nh, d.dn + d.dr]),
  ]); // [T, nh, dn+dr]
  const qNope = b.op("Transpose", [sliceAxis(b, q, 2, 0, d.dn)], { perm: [1, 0, 2] }); // [nh, T, dn]
  const wKb = w("w_kb", [d.nh, d.dn, d.C]); // kv_b_proj's k_nope rows per head
  const qLatent = b.op("Transpose", [b.op("MatMul", [qNope, wKb])], { perm: [1, 0, 2] }); // [T, nh, C]
  const qPe = ropeInterleaved(b, sliceAxis(b, q, 2, d.dn, d.dn + d.dr), cos, sin, d.dr); // [T, nh, dr]
  const qFull = b.op("Concat", [qLatent, qPe], { axis: 2 }); // [T, nh, D]
  const kvA = linear(b, xn, w("w_kv_a", [d.D, d.H])); // [T, C + dr]
  const latent = rmsNorm(b, sliceAxis(b, kvA, 1, 0, d.C), w("w_kv_a_norm", [d.C]), d.eps);
  const kPe3 = b.op("Reshape", [sliceAxis(b, kvA, 1, d.C, d.D), b.int64s([-1, 1, d.dr])]);
  const kPe = b.op("Reshape", [ropeInterleaved(b, kPe3, cos, sin, d.dr), b.int64s([-1, d.dr])]);
  const kv = b.output(b.op("Concat", [latent, kPe], { axis: 1 }, { outputs: ["kv"] }), "float32", ["T", d.D]);

  // attention core, per sequence: queries [B, Tq·nh, D] against [k_past | k_new]
  const batch = b.op("Shape", [kPast], { end: 1 }); // [B]
  const q3 = b.op("Reshape", [qFull, b.op("Concat", [batch, b.int64s([-1, d.D])], { axis: 0 })]); // [B, M, D]
  const kNew = b.op("Reshape", [kv, b.op("Concat", [batch, b.int64s([-1, d.D])], { axis: 0 })]); // [B, Tq, D]
  const sPast = b.op("MatMul", [q3, b.op("Transpose", [kPast], { perm: [0, 2, 1] })]); // [B, M, Sp]
  const sNew = b.op("MatMul", [q3, b.op("Transpose", [kNew], { perm: [0, 2, 1] })]); // [B, M, Tq]
  const scores = b.op("Add", [
    b.op("Mul", [b.op("Concat", [sPast, sNew], { axis: 2 }), b.scalar(softmaxScale)]),
    mask,
  ]);
  const p = b.op("Softmax", [scores], { axis: -1 }); // [B, M, Sp + Tq]
  const sp = b.op("Shape", [kPast], { start: 1, end: 2 }); // [Sp]
  const pPast = b.op("Slice", [p, b.int64s([0]), sp, b.int64s([2])]);
  const pNew = b.op("Slice", [p, sp, b.int64s([Number.MAX_SAFE_INTEGER]), b.int64s([2])]);
  const o = b.op("Add", [b.op("MatMul", [pPast, kPast]), b.op("MatMul", [pNew, kNew])]); // [B, M, D]

  // attention-out
  const oLat = b.op("Transpose", [sliceAxis(b, b.op("Reshape", [o, b.int64s([-1, d.nh, d.D])]), 2, 0, d.C)], {
    perm: [1, 0, 2],
  }); // [nh, T, C]
  const wVb = w("w_vb", [d.nh, d.C, d.dv]); // kv_b_proj's v rows per head, transposed
  const v = b.op("Transpose", [b.op("MatMul", [oLat, wVb])], { perm: [1, 0, 2] }); // [T, nh, dv]
  const attn = linear(b, b.op("Reshape", [v, b.int64s([-1, d.nh * d.dv])]), w("w_o", [d.H, d.nh * d.dv]));
  const wPost = w("w_post_norm", [d.H]);
  if (kind === "dense") {
    const h = b.op("Add", [x, attn]);
    const mlp = swiglu(
      b,
      rmsNorm(b, h, wPost, d.eps),
      w("w_gate", [d.I, d.H]),
      w("w_up", [d.I, d.H]),
      w("w_down", [d.H, d.I]),
    );
    b.output(b.op("Add", [h, mlp], {}, { outputs: ["h_out"] }), "float32", ["T", d.H]);
    return b.toBytes();
  }
  const h = b.output(b.op("Add", [x, attn], {}, { outputs: ["h"] }), "float32", ["T", d.H]);
  const hn = b.output(rmsNorm(b, h, wPost, d.eps, "hn"), "float32", ["T", d.H]);
  b.output(
    b.op("Sigmoid", [linear(b, hn, w("w_router", [d.E, d.H]))], {}, { outputs: ["scores"] }),
    "float32",
    ["T", d.E],
  );
  const shared = swiglu(
    b,
    hn,
    w("w_shared_gate", [d.Is, d.H]),
    w("w_shared_up", [d.Is, d.H]),
    w("w_shared_down", [d.H, d.Is]),
    "shared",
  );
  b.output(shared, "float32", ["T", d.H]);
  return b.toBytes();
}

/** Inputs h_base, h_routed, h_shared [T, H]; returns h_base + (h_routed + h_shared), also output as `name`. */
function residualInput(b: GraphBuilder, d: ModelDims, name: string): string {
  const base = b.input("h_base", "float32", ["T", d.H]);
  const routed = b.input("h_routed", "float32", ["T", d.H]);
  const shared = b.input("h_shared", "float32", ["T", d.H]);
  return b.output(b.op("Add", [base, b.op("Add", [routed, shared])], {}, { outputs: [name] }), "float32", [
    "T",
    d.H,
  ]);
}

/**
 * (5) final norm + lm_head. Inputs the residual parts [T, H] (as attention-in) and rows [R]
 * (int64) whose logits are wanted. Outputs x [T, H] (the final residual) and logits [R, V].
 */
export function finalGraph(d: ModelDims): Uint8Array {
  const b = new GraphBuilder("final");
  const x = residualInput(b, d, "x");
  const rows = b.input("rows", "int64", ["R"]);
  const wNorm = b.input("w_norm", "float32", [d.H]);
  const wHead = b.input("w_lm_head", "float32", [d.V, d.H]);
  const sel = b.op("Gather", [x, rows], { axis: 0 });
  b.output(linear(b, rmsNorm(b, sel, wNorm, d.eps), wHead, "logits"), "float32", ["R", d.V]);
  return b.toBytes();
}
