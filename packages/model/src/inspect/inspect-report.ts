/**
 * The result file of `inspect`: the golden.json schema of the test fixtures
 * (shared/fixtures/tiny-v3/README.md), so that compare_golden.py can check it.
 */

export interface PrefillReport {
  /** [L][5] logits top-5 at every prompt position. */
  top5_ids: number[][];
  top5_values: number[][];
  /** [V] full logits at position L - 1. */
  last_logits: number[];
}

export interface GreedyStepReport {
  position: number;
  context_len: number;
  top5_ids: number[];
  top5_values: number[];
  chosen: number;
  /** top1 - top2 logit. */
  margin: number;
  logits: number[];
}

export interface GreedyReport {
  /** [N] argmax at every step (also when teacher-forced). */
  generated: number[];
  steps: GreedyStepReport[];
  /** [N - 1] tokens actually fed back; present only when teacher-forced. */
  fed_tokens?: number[];
}

export interface RoutingLayerReport {
  layer: number;
  /** [rows][k] ascending. */
  experts: number[][];
  /** [rows][k] in the same order as experts. */
  weights: number[][];
  /** [rows][topk_group] ascending. */
  groups: number[][];
  expert_margin: number[];
  group_margin: number[];
  /** [rows][H] router input. */
  gate_input: number[][];
}

export interface RoutingReport {
  /** L + N - 1: the prompt positions, then the generated tokens fed back. */
  num_positions: number;
  num_prompt_positions: number;
  layers: RoutingLayerReport[];
}

export interface PromptReport {
  name: string;
  tokens: number[];
  prefill: PrefillReport;
  greedy: GreedyReport;
  routing: RoutingReport;
  /** [layers + 1][L][H]: 0 = embeddings, i + 1 = residual after layer i. */
  hidden_states: number[][][];
}

export interface InspectReport {
  format: string;
  reference: Record<string, string | number>;
  model_args: Record<string, string | number | null>;
  derived: Record<string, unknown>;
  max_new_tokens: number;
  prompts: PromptReport[];
}

/**
 * A float32 value as the shortest decimal that reads back to the same float32 (JSON of a
 * Float32Array element otherwise prints the longer float64 expansion).
 */
export function shortestF32(v: number): number {
  if (!Number.isFinite(v) || v === 0) return v;
  for (let p = 1; p < 10; p++) {
    const n = Number(v.toPrecision(p));
    if (Math.fround(n) === v) return n;
  }
  return v;
}

export function f32List(a: ArrayLike<number>): number[] {
  return Array.from(a, shortestF32);
}
