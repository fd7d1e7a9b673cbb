import * as ort from "onnxruntime-node";
import {
  createSession,
  GraphBuilder,
  GroupedExperts,
  GroupedExpertsSessions,
  type ExpertWeights,
} from "@expertmesh/model";
import { SeededRng } from "../seeded-rng.ts";
import { median } from "./median.ts";

export interface ExpertComputeBenchOptions {
  hidden: number;
  /** moe_intermediate_size. */
  inter: number;
  numExperts: number;
  /** Experts per token. */
  topK: number;
  /** Token rows per measurement (e.g. the decode batch sizes and prefill row counts). */
  rows: readonly number[];
  threads: number;
  /** Timed runs per row count are at least this many... */
  minRuns?: number;
  /** ...and continue until this much time has been spent on the row count. */
  minMs?: number;
  seed?: number;
}

export interface ExpertComputeResult {
  rows: number;
  /** Row-expert pairs (rows × topK). */
  assignments: number;
  /** Distinct experts the rows were routed to. */
  activeExperts: number;
  /** 2 · assignments · 3 · hidden · inter. */
  flops: number;
  groupedMs: number;
  /** One MatMul [assignments, hidden] × [hidden, 3·inter]: the same FLOPs. */
  denseMs: number;
  groupedGflops: number;
  denseGflops: number;
  /** groupedMs / denseMs: what routing to many small experts costs over one dense GEMM. */
  ratio: number;
}

/** A dense MatMul whose weight is fed per run, as the grouped graph's expert weights are. */
function denseGraph(hidden: number, out: number): Uint8Array {
  const b = new GraphBuilder("dense_matmul");
  const x = b.input("x", "float32", ["A", hidden]);
  const w = b.input("w", "float32", [hidden, out]);
  b.output(b.op("MatMul", [x, w], {}, { outputs: ["y"] }), "float32", ["A", out]);
  return b.toBytes();
}

function randomArray(rng: SeededRng, n: number, scale: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rng.nextFloat() * 2 - 1) * scale;
  return a;
}

/**
 * The routed-expert computation of one MoE layer (the model's GroupedExperts: one onnxruntime run
 * for all active experts) against ONE dense onnxruntime MatMul of equal FLOPs, timed alternately
 * in the same process. Routing is uniform: each row picks `topK` distinct experts at random.
 */
export async function benchExpertCompute(options: ExpertComputeBenchOptions): Promise<ExpertComputeResult[]> {
  const { hidden: H, inter: I, numExperts: E, topK: K } = options;
  const rng = new SeededRng(options.seed ?? 0);
  const sessionOptions = { executionProvider: "cpu", threads: options.threads };
  const experts = new Map<number, ExpertWeights>();
  for (let e = 0; e < E; e++) {
    experts.set(e, {
      gate: randomArray(rng, I * H, 0.05),
      up: randomArray(rng, I * H, 0.05),
      down: randomArray(rng, H * I, 0.05),
    });
  }
  const sessions = new GroupedExpertsSessions(H, I, sessionOptions);
  const grouped = await GroupedExperts.fromWeights(sessions, experts);
  const dense = await createSession(denseGraph(H, 3 * I), sessionOptions, "dense matmul (bench)");
  const w = new ort.Tensor("float32", randomArray(rng, H * 3 * I, 0.05), [H, 3 * I]);
  const minRuns = options.minRuns ?? 5;
  const minMs = options.minMs ?? 400;
  const results: ExpertComputeResult[] = [];
  try {
    for (const T of options.rows) {
      const x = randomArray(rng, T * H, 1);
      const ids = new Int32Array(T * K);
      const weights = new Float32Array(T * K);
      const active = new Set<number>();
      for (let t = 0; t < T; t++) {
        const picked = new Set<number>();
        while (picked.size < K) picked.add(rng.nextUint32() % E);
        [...picked]
          .sort((a, b) => a - b)
          .forEach((e, j) => {
            ids[t * K + j] = e;
            weights[t * K + j] = rng.nextFloat();
            active.add(e);
          });
      }
      const A = T * K;
      const xDense = new ort.Tensor("float32", randomArray(rng, A * H, 1), [A, H]);
      const runGrouped = async (): Promise<number> => {
        const t0 = performance.now();
        await grouped.run(x, ids, weights);
        return performance.now() - t0;
      };
      const runDense = async (): Promise<number> => {
        const t0 = performance.now();
        await dense.run({ x: xDense, w });
        return performance.now() - t0;
      };
      await runGrouped(); // warm-up: compiles this branch count's graph
      await runDense();
      const g: number[] = [];
      const d: number[] = [];
      let spent = 0;
      while (g.length < minRuns || spent < minMs) {
        const a = await runGrouped();
        const b = await runDense();
        g.push(a);
        d.push(b);
        spent += a + b;
      }
      const flops = 2 * A * 3 * H * I;
      const groupedMs = median(g);
      const denseMs = median(d);
      results.push({
        rows: T,
        assignments: A,
        activeExperts: active.size,
        flops,
        groupedMs,
        denseMs,
        groupedGflops: flops / groupedMs / 1e6,
        denseGflops: flops / denseMs / 1e6,
        ratio: groupedMs / denseMs,
      });
    }
  } finally {
    await dense.release();
    await sessions.release();
  }
  return results;
}
