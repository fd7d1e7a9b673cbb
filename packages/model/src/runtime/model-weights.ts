/**
 * The non-expert weights of the model, read once from the checkpoint as float32 and wrapped once
 * in ort.Tensors (no copy) that are fed by reference to every run. kv_b_proj is split into its
 * per-head k_nope part (absorbed into the query) and v part (transposed); nothing else is copied.
 */
import { Tensor } from "onnxruntime-node";
import type * as ort from "onnxruntime-node";
import { ExpertMeshError, Code } from "@expertmesh/shared";
import type { Checkpoint } from "../checkpoint/checkpoint.ts";
import type { ModelDims } from "./model-graphs.ts";

export type Feeds = Record<string, ort.Tensor>;

export interface LayerWeights {
  kind: "dense" | "moe";
  /** The layer graph's weight inputs: attention + (dense MLP | router and shared expert). */
  feeds: Feeds;
  /** [E] e_score_correction_bias (MoE layers that have one), else null. */
  routerBias: Float32Array | null;
}

export interface ModelWeights {
  /** [V, H] token embeddings, read in JS. */
  embed: Float32Array;
  layers: LayerWeights[];
  final: Feeds;
}

export async function loadModelWeights(ckpt: Checkpoint, d: ModelDims): Promise<ModelWeights> {
  const c = ckpt.config;
  const tensor = async (name: string, dims: number[]): Promise<ort.Tensor> => {
    const data = await ckpt.readFloat32(name);
    const n = dims.reduce((a, b) => a * b, 1);
    if (data.length !== n)
      throw new ExpertMeshError(
        Code.FAILED_PRECONDITION,
        `${name}: ${data.length} values, expected [${dims.join(", ")}]`,
      );
    return new Tensor("float32", data, dims);
  };

  const embed = await ckpt.readFloat32("model.embed_tokens.weight");
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const a = `${p}self_attn.`;
    const { kb, vbT } = splitKvB(await ckpt.readFloat32(`${a}kv_b_proj.weight`), d);
    const feeds: Feeds = {
      w_attn_norm: await tensor(`${p}input_layernorm.weight`, [d.H]),
      w_q_a: await tensor(`${a}q_a_proj.weight`, [d.Q, d.H]),
      w_q_a_norm: await tensor(`${a}q_a_layernorm.weight`, [d.Q]),
      w_q_b: await tensor(`${a}q_b_proj.weight`, [d.nh * (d.dn + d.dr), d.Q]),
      w_kv_a: await tensor(`${a}kv_a_proj_with_mqa.weight`, [d.D, d.H]),
      w_kv_a_norm: await tensor(`${a}kv_a_layernorm.weight`, [d.C]),
      w_kb: new Tensor("float32", kb, [d.nh, d.dn, d.C]),
      w_vb: new Tensor("float32", vbT, [d.nh, d.C, d.dv]),
      w_o: await tensor(`${a}o_proj.weight`, [d.H, d.nh * d.dv]),
      w_post_norm: await tensor(`${p}post_attention_layernorm.weight`, [d.H]),
    };
    if (l < c.firstKDenseReplace) {
      feeds.w_gate = await tensor(`${p}mlp.gate_proj.weight`, [d.I, d.H]);
      feeds.w_up = await tensor(`${p}mlp.up_proj.weight`, [d.I, d.H]);
      feeds.w_down = await tensor(`${p}mlp.down_proj.weight`, [d.H, d.I]);
      layers.push({ kind: "dense", feeds, routerBias: null });
      continue;
    }
    feeds.w_router = await tensor(`${p}mlp.gate.weight`, [d.E, d.H]);
    feeds.w_shared_gate = await tensor(`${p}mlp.shared_experts.gate_proj.weight`, [d.Is, d.H]);
    feeds.w_shared_up = await tensor(`${p}mlp.shared_experts.up_proj.weight`, [d.Is, d.H]);
    feeds.w_shared_down = await tensor(`${p}mlp.shared_experts.down_proj.weight`, [d.H, d.Is]);
    const biasName = `${p}mlp.gate.e_score_correction_bias`;
    const routerBias = ckpt.has(biasName) ? await ckpt.readFloat32(biasName) : null;
    layers.push({ kind: "moe", feeds, routerBias });
  }
  const final: Feeds = {
    w_norm: await tensor("model.norm.weight", [d.H]),
    w_lm_head: ckpt.has("lm_head.weight")
      ? await tensor("lm_head.weight", [d.V, d.H])
      : c.tieWordEmbeddings
        ? new Tensor("float32", embed, [d.V, d.H])
        : await tensor("lm_head.weight", [d.V, d.H]),
  };
  return { embed, layers, final };
}

/**
 * kv_b_proj [nh·(dn+dv), C] (per head: dn k_nope rows then dv v rows) →
 * kb [nh, dn, C] (q_nope · kb absorbs the key up-projection) and vbT [nh, C, dv].
 */
export function splitKvB(kvB: Float32Array, d: ModelDims): { kb: Float32Array; vbT: Float32Array } {
  const per = d.dn + d.dv;
  if (kvB.length !== d.nh * per * d.C)
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      `kv_b_proj: ${kvB.length} values, expected [${d.nh * per}, ${d.C}]`,
    );
  const kb = new Float32Array(d.nh * d.dn * d.C);
  const vbT = new Float32Array(d.nh * d.C * d.dv);
  for (let h = 0; h < d.nh; h++) {
    kb.set(kvB.subarray(h * per * d.C, (h * per + d.dn) * d.C), h * d.dn * d.C);
    for (let j = 0; j < d.dv; j++) {
      const row = (h * per + d.dn + j) * d.C;
      for (let c = 0; c < d.C; c++) vbT[(h * d.C + c) * d.dv + j] = kvB[row + c] as number;
    }
  }
  return { kb, vbT };
}
