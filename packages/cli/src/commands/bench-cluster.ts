/**
 * The cluster part of `expertmesh bench --cluster`: N real expert-worker processes (placement
 * file, no Redis) and, in this process, an engine whose model has no local experts and reaches
 * them through RemoteRoutedExperts. Measured together with the single-process engine (ratios of
 * figures taken side by side), plus the Dispatch stream against raw loopback TCP and the FP8 /
 * BF16 wire's deviation from the float32 wire.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { benchDispatchWire, RemoteRoutedExperts } from "@expertmesh/dispatch";
import type { CombineDtype, RowDtype, WireBenchResult } from "@expertmesh/dispatch";
import { benchPrompts, benchSystemsTogether, measureWireDeviation } from "@expertmesh/engine";
import type { BenchSystem, SystemsBenchRow, WireDeviation } from "@expertmesh/engine";
import { loadModel } from "@expertmesh/model";
import type { DeepSeekModel } from "@expertmesh/model";
import { placementToJSON } from "@expertmesh/placement";
import { WireDtype } from "@expertmesh/proto";
import { defaultClusterPlacement, startExpertWorkers, stopMembers } from "../cluster/local-cluster.ts";
import type { ClusterMember } from "../cluster/local-cluster.ts";

export interface ClusterBenchSettings {
  modelDir: string;
  /** The single-process engine's model (all experts local), measured alongside. */
  local: DeepSeekModel;
  workers: number;
  nodes: number;
  wire: "bf16" | "float32";
  /** onnxruntime threads of the attention side (this process) and of each worker. */
  threads: number;
  workerThreads: number;
  batchSizes: readonly number[];
  promptLength: number;
  decodeSteps: number;
  reps: number;
  maxNumBatchedTokens: number;
  /** Two-micro-batch ping-pong is measured at batch sizes ≥ this. */
  microBatchesFrom: number;
  /** Prompts of the wire-deviation check. */
  deviationPrompts: number;
  log: (line: string) => void;
}

export interface ClusterBenchReport {
  setup: {
    workers: number;
    nodes: number;
    wire: string;
    combine: string;
    attentionThreads: number;
    workerThreads: number;
    workerStartSeconds: number;
  };
  /** Per B: decode/prefill tok/s of each system and the cluster ÷ single-process ratios. */
  throughput: {
    batchSize: number;
    local: { decodeTokS: number; prefillTokS: number };
    cluster: { decodeTokS: number; prefillTokS: number };
    clusterPingPong: { decodeTokS: number; prefillTokS: number } | null;
    decodeRatio: number;
    prefillRatio: number;
    pingPongDecodeRatio: number | null;
    /** ping-pong ÷ one micro-batch, both on the cluster. */
    pingPongGain: number | null;
    decodeMs: Record<string, number[]>;
  }[];
  wire: WireBenchResult;
  /** BF16 wire, FP8 rows + BF16 sums, and the single-process engine, each against the float32 wire. */
  wireDeviation: { reference: string; prompts: number; decodeSteps: number; variants: WireDeviation[] };
}

const WIRE = { bf16: WireDtype.BF16, float32: WireDtype.FLOAT32 } as const;

export async function runClusterBench(s: ClusterBenchSettings): Promise<ClusterBenchReport> {
  const config = s.local.config;
  const placement = defaultClusterPlacement(config, s.workers, s.nodes);
  const dir = await mkdtemp(join(tmpdir(), "expertmesh-bench-"));
  const placementFile = join(dir, "placement.json");
  await writeFile(placementFile, JSON.stringify(placementToJSON(placement)));
  const t0 = performance.now();
  let workers: ClusterMember[] = [];
  const backends: RemoteRoutedExperts[] = [];
  let attention: DeepSeekModel | null = null;
  try {
    workers = await startExpertWorkers({
      modelDir: s.modelDir,
      host: "127.0.0.1",
      threads: s.workerThreads,
      logLevel: "warn",
      output: () => ({ kind: "lines", write: (line) => s.log(line) }),
      readyTimeoutMs: 300_000,
      stopTimeoutMs: 15_000,
      placement,
      source: { placementFile },
    });
    const workerStartSeconds = (performance.now() - t0) / 1000;
    s.log(`${workers.length} expert-workers serving after ${workerStartSeconds.toFixed(1)} s`);
    const addresses = new Map(workers.map((w) => [w.name, w.address]));
    const remote = (rowDtype: RowDtype, combineDtype: CombineDtype): RemoteRoutedExperts => {
      const r = new RemoteRoutedExperts({
        placement,
        addresses,
        hiddenSize: config.hiddenSize,
        rowDtype,
        combineDtype,
        timeoutMs: 120_000,
      });
      backends.push(r);
      return r;
    };
    const main = remote(WIRE[s.wire], WIRE[s.wire]);
    const f32 = s.wire === "float32" ? main : remote(WireDtype.FLOAT32, WireDtype.FLOAT32);
    const bf16 = s.wire === "bf16" ? main : remote(WireDtype.BF16, WireDtype.BF16);
    const fp8 = remote(WireDtype.FP8_E4M3, WireDtype.BF16);
    await Promise.all(backends.map((b) => b.waitForReady(30_000)));
    const model = await loadModel(s.modelDir, { threads: s.threads, experts: "none", routedExperts: main });
    attention = model;

    const systems: BenchSystem[] = [
      { name: "local", model: s.local },
      { name: "cluster", model },
      { name: "clusterPingPong", model, microBatches: 2, minBatch: Math.max(2, s.microBatchesFrom) },
    ];
    const rows = await benchSystemsTogether(systems, {
      batchSizes: s.batchSizes,
      promptLength: s.promptLength,
      decodeSteps: s.decodeSteps,
      reps: s.reps,
      maxNumBatchedTokens: s.maxNumBatchedTokens,
      onBatch: (r) =>
        s.log(
          `cluster B=${r.batchSize}: ${Object.entries(r.systems)
            .map(([n, f]) => `${n} decode ${f.decodeTokS.toFixed(0)} tok/s`)
            .join(", ")}`,
        ),
    });

    const firstMoe = config.firstKDenseReplace;
    const wire = await benchDispatchWire(main, {
      layer: firstMoe,
      nRoutedExperts: config.nRoutedExperts,
      nGroup: config.nGroup,
      topkGroup: config.topkGroup,
      topK: config.numExpertsPerTok,
      rows: [Math.max(...s.batchSizes), Math.min(s.maxNumBatchedTokens, 64 * s.promptLength)],
    });
    for (const w of wire.sizes)
      s.log(`wire rows=${w.rows}: dispatch ${w.dispatchMs.toFixed(2)} ms vs tcp ${w.tcpMs.toFixed(2)} ms`);

    const prompts = benchPrompts(s.deviationPrompts, s.promptLength, config.vocabSize, 1);
    const use = (backend: RemoteRoutedExperts) => () => {
      model.setRoutedExperts(backend);
      return model;
    };
    const variants = await measureWireDeviation(
      { name: "float32 wire", use: use(f32) },
      [
        { name: "bf16 rows + bf16 sums", use: use(bf16) },
        { name: "fp8_e4m3 rows + bf16 sums", use: use(fp8) },
        { name: "single process (local experts)", use: () => s.local },
      ],
      prompts,
      s.decodeSteps,
    );
    model.setRoutedExperts(main);
    for (const v of variants)
      s.log(
        `deviation ${v.name}: max |Δlogit| ${v.maxAbsLogitDiff.toExponential(2)}, greedy ${v.greedyMatches}/${v.sequences}`,
      );

    return {
      setup: {
        workers: s.workers,
        nodes: s.nodes,
        wire: WireDtype[main.rowDtype],
        combine: WireDtype[main.combineDtype],
        attentionThreads: s.threads,
        workerThreads: s.workerThreads,
        workerStartSeconds,
      },
      throughput: rows.map((r) => summarize(r)),
      wire,
      wireDeviation: {
        reference: "float32 wire",
        prompts: prompts.length,
        decodeSteps: s.decodeSteps,
        variants,
      },
    };
  } finally {
    await Promise.all(backends.map((b) => b.close(1_000)));
    await attention?.release();
    await stopMembers([workers], 15_000);
    await rm(dir, { recursive: true, force: true });
  }
}

function summarize(r: SystemsBenchRow): ClusterBenchReport["throughput"][number] {
  const pick = (n: string): { decodeTokS: number; prefillTokS: number } | null => {
    const f = r.systems[n];
    return f === undefined ? null : { decodeTokS: f.decodeTokS, prefillTokS: f.prefillTokS };
  };
  const local = pick("local")!;
  const cluster = pick("cluster")!;
  const pp = pick("clusterPingPong");
  return {
    batchSize: r.batchSize,
    local,
    cluster,
    clusterPingPong: pp,
    decodeRatio: cluster.decodeTokS / local.decodeTokS,
    prefillRatio: cluster.prefillTokS / local.prefillTokS,
    pingPongDecodeRatio: pp === null ? null : pp.decodeTokS / local.decodeTokS,
    pingPongGain: pp === null ? null : pp.decodeTokS / cluster.decodeTokS,
    decodeMs: Object.fromEntries(Object.entries(r.systems).map(([n, f]) => [n, f.decodeMs])),
  };
}
