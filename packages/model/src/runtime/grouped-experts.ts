/**
 * Grouped routed experts: the weighted sum of the routed SwiGLU experts for a batch of rows,
 * computed with ONE onnxruntime run for all active experts of a layer. Shared unchanged by the
 * single-process model and the expert workers (which hold only their slice: expert ids they do
 * not hold are skipped, so a worker can be handed just its own (expert, weight) slots).
 */
import type * as ort from "onnxruntime-node";
import { Tensor } from "onnxruntime-node";
import { ExpertMeshError, Code } from "@expertmesh/shared";
import { GraphBuilder } from "../onnx/graph-builder.ts";
import { swiglu } from "../onnx/graph-ops.ts";
import { createSession, type SessionOptions } from "../onnx/ort-session.ts";

/** One routed expert's SwiGLU weights, as stored: gate/up [I, H], down [H, I]. */
export interface ExpertWeights {
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
}

/**
 * A graph with A expert branches: branch i gathers its rows (idx_i [n_i]) from x [T, H] and
 * outputs SwiGLU_i(rows) · wt_i ([n_i, 1]); all branches are concatenated into y [Σn_i, H].
 */
export function groupedExpertsGraph(hidden: number, inter: number, branches: number): Uint8Array {
  const b = new GraphBuilder(`grouped_experts_${branches}`);
  const x = b.input("x", "float32", ["T", hidden]);
  const outs: string[] = [];
  for (let i = 0; i < branches; i++) {
    const idx = b.input(`idx_${i}`, "int64", [`n_${i}`]);
    const wt = b.input(`wt_${i}`, "float32", [`n_${i}`, 1]);
    const wg = b.input(`w_gate_${i}`, "float32", [inter, hidden]);
    const wu = b.input(`w_up_${i}`, "float32", [inter, hidden]);
    const wd = b.input(`w_down_${i}`, "float32", [hidden, inter]);
    const rows = b.op("Gather", [x, idx], { axis: 0 });
    outs.push(b.op("Mul", [swiglu(b, rows, wg, wu, wd), wt]));
  }
  const y = branches === 1 ? b.op("Identity", outs, {}, { outputs: ["y"] }) : b.op("Concat", outs, { axis: 0 }, { outputs: ["y"] });
  b.output(y, "float32", ["N", hidden]);
  return b.toBytes();
}

/**
 * Graphs are compiled per branch count; counts are rounded up to a bucket (padding branches get
 * no rows) so that a layer's varying number of active experts reuses few sessions.
 */
export function branchBucket(active: number): number {
  if (active <= 8) return active;
  if (active <= 64) return Math.ceil(active / 8) * 8;
  return Math.ceil(active / 32) * 32;
}

/** Compiled grouped-expert graphs for one (hidden, intermediate) shape, shared by all layers. */
export class GroupedExpertsSessions {
  private readonly sessions = new Map<number, Promise<ort.InferenceSession>>();

  constructor(
    readonly hidden: number,
    readonly inter: number,
    private readonly options: SessionOptions,
  ) {}

  /** The session for `branches` branches, compiled on first use. */
  get(branches: number): Promise<ort.InferenceSession> {
    let s = this.sessions.get(branches);
    if (s === undefined) {
      s = createSession(groupedExpertsGraph(this.hidden, this.inter, branches), this.options, `grouped experts (${branches})`);
      this.sessions.set(branches, s);
    }
    return s;
  }

  async release(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map(async (s) => (await s).release()));
  }
}

interface HeldExpert {
  gate: ort.Tensor;
  up: ort.Tensor;
  down: ort.Tensor;
}

/** The routed experts of one layer that this process holds. */
export class GroupedExperts {
  private readonly held = new Map<number, HeldExpert>();

  constructor(
    private readonly sessions: GroupedExpertsSessions,
    experts: ReadonlyMap<number, ExpertWeights>,
  ) {
    const { hidden: H, inter: I } = sessions;
    for (const [id, w] of experts) {
      if (w.gate.length !== I * H || w.up.length !== I * H || w.down.length !== H * I) {
        throw new ExpertMeshError(Code.INTERNAL, `expert ${id}: weights do not match [${I}, ${H}] / [${H}, ${I}]`);
      }
      // wrapped once, fed by reference on every run (no copy)
      this.held.set(id, {
        gate: new Tensor("float32", w.gate, [I, H]),
        up: new Tensor("float32", w.up, [I, H]),
        down: new Tensor("float32", w.down, [H, I]),
      });
    }
  }

  /** Logical expert ids held, ascending. */
  expertIds(): number[] {
    return [...this.held.keys()].sort((a, b) => a - b);
  }

  has(expert: number): boolean {
    return this.held.has(expert);
  }

  /**
   * rows [T, H], expertIds [T, k] (negative or not held: skipped), weights [T, k] →
   * Σ_j weights[t, j] · expert_{ids[t, j]}(rows[t]) per row, [T, H] (zero rows where nothing is held).
   * Contributions are added in ascending expert order, as the reference does.
   */
  async run(rows: Float32Array, expertIds: Int32Array, weights: Float32Array): Promise<Float32Array> {
    const H = this.sessions.hidden;
    if (rows.length % H !== 0) throw new ExpertMeshError(Code.INVALID_ARGUMENT, `grouped experts: rows length ${rows.length} is not a multiple of hidden ${H}`);
    const T = rows.length / H;
    const out = new Float32Array(T * H);
    if (T === 0) return out;
    if (expertIds.length % T !== 0 || weights.length !== expertIds.length) {
      throw new ExpertMeshError(Code.INVALID_ARGUMENT, `grouped experts: ${expertIds.length} expert ids / ${weights.length} weights for ${T} rows`);
    }
    const k = expertIds.length / T;

    // bucket (row, weight) pairs by held expert
    const counts = new Map<number, number>();
    for (let i = 0; i < expertIds.length; i++) {
      const e = expertIds[i] as number;
      if (this.held.has(e)) counts.set(e, (counts.get(e) ?? 0) + 1);
    }
    if (counts.size === 0) return out;
    const active = [...counts.keys()].sort((a, b) => a - b);
    const idx = active.map((e) => new BigInt64Array(counts.get(e) as number));
    const wt = active.map((e) => new Float32Array(counts.get(e) as number));
    const slot = new Map<number, number>(active.map((e, i) => [e, i]));
    const fill = new Int32Array(active.length);
    for (let t = 0; t < T; t++) {
      for (let j = 0; j < k; j++) {
        const s = slot.get(expertIds[t * k + j] as number);
        if (s === undefined) continue;
        const n = fill[s] as number;
        (idx[s] as BigInt64Array)[n] = BigInt(t);
        (wt[s] as Float32Array)[n] = weights[t * k + j] as number;
        fill[s] = n + 1;
      }
    }

    const branches = branchBucket(active.length);
    const session = await this.sessions.get(branches);
    const feeds: Record<string, ort.Tensor> = { x: new Tensor("float32", rows, [T, H]) };
    const pad = this.held.get(active[0] as number) as HeldExpert;
    for (let i = 0; i < branches; i++) {
      const e = active[i];
      const w = e === undefined ? pad : (this.held.get(e) as HeldExpert);
      const n = i < active.length ? (fill[i] as number) : 0;
      feeds[`idx_${i}`] = new Tensor("int64", i < active.length ? (idx[i] as BigInt64Array) : new BigInt64Array(0), [n]);
      feeds[`wt_${i}`] = new Tensor("float32", i < active.length ? (wt[i] as Float32Array) : new Float32Array(0), [n, 1]);
      feeds[`w_gate_${i}`] = w.gate;
      feeds[`w_up_${i}`] = w.up;
      feeds[`w_down_${i}`] = w.down;
    }
    const y = (await session.run(feeds)).y?.data as Float32Array; // [Σn_i, H]

    // combine: branches in ascending expert order, each adding into its rows
    let r = 0;
    for (let s = 0; s < active.length; s++) {
      const ids = idx[s] as BigInt64Array;
      for (let n = 0; n < ids.length; n++, r++) {
        const t = Number(ids[n]);
        const o = t * H;
        const yo = r * H;
        for (let h = 0; h < H; h++) out[o + h] = (out[o + h] as number) + (y[yo + h] as number);
      }
    }
    return out;
  }
}
