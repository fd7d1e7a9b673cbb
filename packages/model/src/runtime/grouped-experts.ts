/**
 * Grouped routed experts: the weighted sum of the routed SwiGLU experts for a batch of rows,
 * computed by ONE onnxruntime op for all experts of a layer (com.microsoft MoE, which loops
 * over the experts that have rows, in parallel across intra-op threads). Shared unchanged by
 * the single-process model and the expert workers: expert ids a process does not hold are
 * skipped, so a worker can be handed just its own (expert, weight) slots.
 *
 * Weights are held stacked per layer — gate/up interleaved [E_held, 2I, H] and down
 * [E_held, H, I] — one float32 copy, fed by reference on every run.
 *
 * The MoE op takes routing as logits and applies softmax + top-k itself. We pass log(w) for a
 * row's held experts and -inf elsewhere, so its softmax yields w_j / Σ_held w, and multiply
 * the row by Σ_held w afterwards: the weights are applied with float32 rounding only (a few ulp),
 * the same order of error as a different summation order.
 */
import type * as ort from "onnxruntime-node";
import { Tensor } from "onnxruntime-node";
import { ExpertMeshError, Code } from "@expertmesh/shared";
import { floatAttr, GraphBuilder } from "../onnx/graph-builder.ts";
import { createSession, type SessionOptions } from "../onnx/ort-session.ts";

/** One routed expert's SwiGLU weights, as stored: gate/up [I, H], down [H, I]. */
export interface ExpertWeights {
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
}

/** The MoE graph: y [R, H] = s · Σ_{top-k of logits} softmax(logits)_e · SwiGLU_e(x). */
export function groupedExpertsGraph(hidden: number, inter: number, experts: number, k: number): Uint8Array {
  const b = new GraphBuilder(`grouped_experts_k${k}`);
  const x = b.input("x", "float32", ["R", hidden]);
  const logits = b.input("logits", "float32", ["R", experts]);
  const scale = b.input("scale", "float32", ["R", 1]);
  const w1 = b.input("w_gate_up", "float32", [experts, 2 * inter, hidden]);
  const w2 = b.input("w_down", "float32", [experts, hidden, inter]);
  const moe = b.op(
    "MoE",
    [x, logits, w1, "", w2],
    {
      k,
      activation_type: "swiglu",
      // interleaved gate/up rows; silu(g) · u exactly: alpha 1, beta 0, no clamp
      swiglu_fusion: 1,
      activation_alpha: floatAttr(1),
      activation_beta: floatAttr(0),
      swiglu_limit: floatAttr(3.4e38),
      normalize_routing_weights: 0,
    },
    { domain: "com.microsoft" },
  );
  b.output(b.op("Mul", [moe, scale], {}, { outputs: ["y"] }), "float32", ["R", hidden]);
  return b.toBytes();
}

/** Compiled grouped-expert graphs for one (hidden, intermediate) shape, keyed by (held experts, k). */
export class GroupedExpertsSessions {
  private readonly sessions = new Map<string, Promise<ort.InferenceSession>>();

  constructor(
    readonly hidden: number,
    readonly inter: number,
    private readonly options: SessionOptions,
  ) {}

  get(experts: number, k: number): Promise<ort.InferenceSession> {
    const key = `${experts}/${k}`;
    let s = this.sessions.get(key);
    if (s === undefined) {
      s = createSession(
        groupedExpertsGraph(this.hidden, this.inter, experts, k),
        this.options,
        `grouped experts (${experts} experts, k ${k})`,
      );
      this.sessions.set(key, s);
    }
    return s;
  }

  async release(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map(async (s) => (await s).release()));
  }
}

/** The routed experts of one layer that this process holds. */
export class GroupedExperts {
  /** Logical expert id → slot in the stacked weights. */
  private readonly slot = new Map<number, number>();
  private readonly ids: number[];
  private readonly gateUp: ort.Tensor; // [E_held, 2I, H]
  private readonly down: ort.Tensor; // [E_held, H, I]

  /** `ids` ascending and distinct; `gateUp`/`down` already stacked in that order. */
  private constructor(
    private readonly sessions: GroupedExpertsSessions,
    ids: readonly number[],
    gateUp: Float32Array,
    down: Float32Array,
  ) {
    const { hidden: H, inter: I } = sessions;
    this.ids = [...ids];
    this.ids.forEach((e, i) => this.slot.set(e, i));
    this.gateUp = new Tensor("float32", gateUp, [ids.length, 2 * I, H]);
    this.down = new Tensor("float32", down, [ids.length, H, I]);
  }

  /**
   * Loads experts `ids` one at a time through `read`, stacking each into the layer's weights as
   * it arrives (peak memory: the stack plus one expert).
   */
  static async load(
    sessions: GroupedExpertsSessions,
    ids: readonly number[],
    read: (id: number) => Promise<ExpertWeights>,
  ): Promise<GroupedExperts> {
    const { hidden: H, inter: I } = sessions;
    const sorted = [...ids].sort((a, b) => a - b);
    if (sorted.length === 0)
      throw new ExpertMeshError(Code.INVALID_ARGUMENT, "grouped experts: no experts to hold");
    if (sorted.some((e, i) => i > 0 && e === sorted[i - 1]))
      throw new ExpertMeshError(Code.INVALID_ARGUMENT, "grouped experts: duplicate expert ids");
    const gateUp = new Float32Array(sorted.length * 2 * I * H);
    const down = new Float32Array(sorted.length * H * I);
    for (let s = 0; s < sorted.length; s++) {
      const id = sorted[s] as number;
      const w = await read(id);
      if (w.gate.length !== I * H || w.up.length !== I * H || w.down.length !== H * I) {
        throw new ExpertMeshError(
          Code.FAILED_PRECONDITION,
          `expert ${id}: weights do not match [${I}, ${H}] / [${H}, ${I}]`,
        );
      }
      // interleave gate and up rows: row 2i = gate_i, row 2i + 1 = up_i
      const base = s * 2 * I * H;
      for (let i = 0; i < I; i++) {
        gateUp.set(w.gate.subarray(i * H, (i + 1) * H), base + 2 * i * H);
        gateUp.set(w.up.subarray(i * H, (i + 1) * H), base + (2 * i + 1) * H);
      }
      down.set(w.down, s * H * I);
    }
    return new GroupedExperts(sessions, sorted, gateUp, down);
  }

  /** Stacks in-memory expert weights (tests, small slices). */
  static fromWeights(
    sessions: GroupedExpertsSessions,
    experts: ReadonlyMap<number, ExpertWeights>,
  ): Promise<GroupedExperts> {
    return GroupedExperts.load(sessions, [...experts.keys()], (id) =>
      Promise.resolve(experts.get(id) as ExpertWeights),
    );
  }

  /** Logical expert ids held, ascending. */
  expertIds(): number[] {
    return [...this.ids];
  }

  has(expert: number): boolean {
    return this.slot.has(expert);
  }

  /**
   * rows [T, H], expertIds [T, k] (not held: skipped), weights [T, k] (≥ 0) →
   * Σ_j weights[t, j] · expert_{ids[t, j]}(rows[t]) per row, [T, H] (zero rows where nothing is held).
   */
  async run(rows: Float32Array, expertIds: Int32Array, weights: Float32Array): Promise<Float32Array> {
    const H = this.sessions.hidden;
    if (rows.length % H !== 0)
      throw new ExpertMeshError(
        Code.INVALID_ARGUMENT,
        `grouped experts: rows length ${rows.length} is not a multiple of hidden ${H}`,
      );
    const T = rows.length / H;
    const out = new Float32Array(T * H);
    if (T === 0) return out;
    if (expertIds.length % T !== 0 || weights.length !== expertIds.length) {
      throw new ExpertMeshError(
        Code.INVALID_ARGUMENT,
        `grouped experts: ${expertIds.length} expert ids / ${weights.length} weights for ${T} rows`,
      );
    }
    const k = expertIds.length / T;
    const E = this.ids.length;

    // rows with at least one held expert, and their routing as logits log(w) (-inf elsewhere)
    const active: number[] = [];
    for (let t = 0; t < T; t++) {
      for (let j = 0; j < k; j++) {
        const w = weights[t * k + j] as number;
        if (!(w >= 0))
          throw new ExpertMeshError(
            Code.INVALID_ARGUMENT,
            `grouped experts: weight ${w} at row ${t} is not ≥ 0`,
          );
        if (w > 0 && this.slot.has(expertIds[t * k + j] as number)) {
          active.push(t);
          break;
        }
      }
    }
    const R = active.length;
    if (R === 0) return out;
    const logits = new Float32Array(R * E).fill(-Infinity);
    const scale = new Float32Array(R);
    for (let r = 0; r < R; r++) {
      const t = active[r] as number;
      let sum = 0;
      for (let j = 0; j < k; j++) {
        const s = this.slot.get(expertIds[t * k + j] as number);
        const w = weights[t * k + j] as number;
        if (s === undefined || w === 0) continue;
        const i = r * E + s;
        // a repeated expert gets the sum of its weights
        logits[i] = Math.log(logits[i] === -Infinity ? w : Math.exp(logits[i] as number) + w);
        sum += w;
      }
      scale[r] = sum;
    }
    const x = R === T ? rows : gatherRows(rows, active, H);
    const session = await this.sessions.get(E, Math.min(k, E));
    const y = (
      await session.run({
        x: new Tensor("float32", x, [R, H]),
        logits: new Tensor("float32", logits, [R, E]),
        scale: new Tensor("float32", scale, [R, 1]),
        w_gate_up: this.gateUp,
        w_down: this.down,
      })
    ).y?.data as Float32Array; // [R, H]
    if (R === T) return y;
    active.forEach((t, r) => out.set(y.subarray(r * H, (r + 1) * H), t * H));
    return out;
  }
}

function gatherRows(rows: Float32Array, which: readonly number[], H: number): Float32Array {
  const x = new Float32Array(which.length * H);
  which.forEach((t, r) => x.set(rows.subarray(t * H, (t + 1) * H), r * H));
  return x;
}
