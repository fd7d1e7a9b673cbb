/**
 * `inspect`: run prompts through the model the way the golden outputs were made — one prefill
 * of the whole prompt from position 0, then greedy decoding one token at a time through the KV
 * cache for max_new_tokens steps (no stop on EOS) — and report logits, routing and hidden
 * states in the golden.json schema. With teacher forcing, each prompt's forced tokens are fed
 * back instead of the argmax (the argmax is still reported as `generated`).
 */
import { ExpertMeshError, Code } from "@expertmesh/shared";
import type { DeepSeekModel } from "../runtime/deepseek-model.ts";
import type { MoeLayerCapture } from "../runtime/forward-batch.ts";
import {
  f32List,
  shortestF32,
  type GreedyStepReport,
  type InspectReport,
  type PromptReport,
  type RoutingLayerReport,
} from "./inspect-report.ts";
import type { InspectPrompt } from "./prompts-file.ts";

export interface InspectOptions {
  /** Feed each prompt's forcedTokens back instead of the argmax. */
  teacherForce?: boolean;
}

const f32 = Math.fround;

/** Top-5 of a logits row: ids by descending value (lower id first on ties) and their values. */
export function top5(logits: Float32Array): { ids: number[]; values: number[] } {
  const ids: number[] = [];
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i] as number;
    if (ids.length === 5 && !(v > (logits[ids[4] as number] as number))) continue;
    let j = ids.length;
    while (j > 0 && v > (logits[ids[j - 1] as number] as number)) j--;
    ids.splice(j, 0, i);
    if (ids.length > 5) ids.pop();
  }
  return { ids, values: ids.map((i) => shortestF32(logits[i] as number)) };
}

export async function inspectPrompts(
  model: DeepSeekModel,
  prompts: readonly InspectPrompt[],
  options: InspectOptions = {},
): Promise<InspectReport> {
  const reports: PromptReport[] = [];
  for (const p of prompts) reports.push(await inspectPrompt(model, p, options));
  const c = model.config;
  const y = c.ropeScaling;
  return {
    format: "dsv3-oracle-golden/1",
    reference: { implementation: "expertmesh onnxruntime", compute_dtype: "float32" },
    model_args: {
      vocab_size: c.vocabSize,
      dim: c.hiddenSize,
      inter_dim: c.intermediateSize,
      moe_inter_dim: c.moeIntermediateSize,
      n_layers: c.numLayers,
      n_dense_layers: c.firstKDenseReplace,
      n_heads: c.numHeads,
      n_routed_experts: c.nRoutedExperts,
      n_shared_experts: c.nSharedExperts,
      n_activated_experts: c.numExpertsPerTok,
      n_expert_groups: c.nGroup,
      n_limited_groups: c.topkGroup,
      score_func: "sigmoid",
      route_scale: c.routedScalingFactor,
      q_lora_rank: c.qLoraRank,
      kv_lora_rank: c.kvLoraRank,
      qk_nope_head_dim: c.qkNopeHeadDim,
      qk_rope_head_dim: c.qkRopeHeadDim,
      v_head_dim: c.vHeadDim,
      original_seq_len: y?.originalMaxPositionEmbeddings ?? null,
      rope_theta: c.ropeTheta,
      rope_factor: y?.factor ?? null,
      beta_fast: y?.betaFast ?? null,
      beta_slow: y?.betaSlow ?? null,
      mscale: y?.mscaleAllDim ?? null,
    },
    derived: {
      yarn_active: y !== null,
      softmax_scale: model.rope.softmaxScale,
      qk_head_dim: c.qkNopeHeadDim + c.qkRopeHeadDim,
      mscale: y === null ? 1 : 0.1 * y.mscaleAllDim * Math.log(y.factor) + 1,
      yarn_correction_range: model.rope.correctionRange,
      rope_inv_freq: f32List(model.rope.invFreq),
      moe_layers: Array.from(
        { length: c.numLayers - c.firstKDenseReplace },
        (_, i) => c.firstKDenseReplace + i,
      ),
      experts_per_group: c.nRoutedExperts / c.nGroup,
    },
    max_new_tokens: Math.max(0, ...prompts.map((p) => p.maxNewTokens)),
    prompts: reports,
  };
}

async function inspectPrompt(
  model: DeepSeekModel,
  p: InspectPrompt,
  options: InspectOptions,
): Promise<PromptReport> {
  const V = model.config.vocabSize;
  const H = model.dims.H;
  const L = p.tokens.length;
  const N = p.maxNewTokens;
  const forced = options.teacherForce === true ? p.forcedTokens : undefined;
  if (options.teacherForce === true && (forced === undefined || forced.length < N - 1)) {
    throw new ExpertMeshError(
      Code.INVALID_ARGUMENT,
      `prompt "${p.name}": teacher forcing needs at least ${Math.max(N - 1, 0)} forced tokens, got ${forced?.length ?? "none"}`,
    );
  }
  const kv = model.createKvStore();
  const seq = 0;
  kv.reserve(seq, L + N);

  // prefill
  const pre = await model.forward(
    { sequences: [{ seq, tokens: Int32Array.from(p.tokens), start: 0, logits: "all" }] },
    kv,
    { capture: "all" },
  );
  const capture = pre.capture;
  if (capture === undefined) throw new ExpertMeshError(Code.INTERNAL, "forward returned no capture");
  const prefillTop = Array.from({ length: L }, (_, i) => top5(pre.logits.subarray(i * V, (i + 1) * V)));
  const hidden = capture.hidden.map((h) =>
    Array.from({ length: L }, (_, t) => f32List(h.subarray(t * H, (t + 1) * H))),
  );
  const routing = new Map<number, RoutingLayerReport>();
  const addRouting = (moe: readonly MoeLayerCapture[]): void => {
    for (const m of moe) {
      let r = routing.get(m.layer);
      if (r === undefined) {
        r = {
          layer: m.layer,
          experts: [],
          weights: [],
          groups: [],
          expert_margin: [],
          group_margin: [],
          gate_input: [],
        };
        routing.set(m.layer, r);
      }
      const rows = m.gateInput.length / H;
      const k = m.routing.experts.length / rows;
      const kg = m.routing.groups.length / rows;
      for (let t = 0; t < rows; t++) {
        r.experts.push(Array.from(m.routing.experts.subarray(t * k, (t + 1) * k)));
        r.weights.push(f32List(m.routing.weights.subarray(t * k, (t + 1) * k)));
        r.groups.push(Array.from(m.routing.groups.subarray(t * kg, (t + 1) * kg)));
        r.expert_margin.push(shortestF32(m.routing.expertMargin[t] as number));
        r.group_margin.push(shortestF32(m.routing.groupMargin[t] as number));
        r.gate_input.push(f32List(m.gateInput.subarray(t * H, (t + 1) * H)));
      }
    }
  };
  addRouting(capture.moe);

  // greedy decoding: step 0 = the prefill's last position; step k after feeding token k - 1
  const generated: number[] = [];
  const fed: number[] = [];
  const steps: GreedyStepReport[] = [];
  let logits = pre.logits.subarray((L - 1) * V, L * V);
  for (let k = 0; k < N; k++) {
    const position = L - 1 + k;
    const t = top5(logits);
    const chosen = t.ids[0] as number;
    generated.push(chosen);
    steps.push({
      position,
      context_len: position + 1,
      top5_ids: t.ids,
      top5_values: t.values,
      chosen,
      margin: shortestF32(f32((logits[chosen] as number) - (logits[t.ids[1] ?? chosen] as number))),
      logits: f32List(logits),
    });
    if (k === N - 1) break;
    const next = forced === undefined ? chosen : (forced[k] as number);
    fed.push(next);
    const r = await model.forward(
      { sequences: [{ seq, tokens: Int32Array.of(next), start: position + 1, logits: "last" }] },
      kv,
      { capture: "routing" },
    );
    addRouting(r.capture?.moe ?? []);
    logits = r.logits.subarray(0, V);
  }

  return {
    name: p.name,
    tokens: [...p.tokens],
    prefill: {
      top5_ids: prefillTop.map((x) => x.ids),
      top5_values: prefillTop.map((x) => x.values),
      last_logits: f32List(pre.logits.subarray((L - 1) * V, L * V)),
    },
    greedy: forced === undefined ? { generated, steps } : { generated, steps, fed_tokens: fed },
    routing: {
      num_positions: L + Math.max(N - 1, 0),
      num_prompt_positions: L,
      layers: [...routing.values()],
    },
    hidden_states: hidden,
  };
}
