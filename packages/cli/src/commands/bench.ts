/**
 * `expertmesh bench` (`pnpm bench`): the engine on the bench model, following
 * shared/bench/README.md — B sequences with different 64-token prompts, 32 greedy decode steps,
 * 2 threads, medians of a few repetitions — plus the grouped routed-expert computation against
 * one dense MatMul of equal FLOPs. Prints one JSON document (progress goes to stderr).
 */
import { writeFile } from "node:fs/promises";
import { cpus, loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import {
  benchExpertCompute,
  benchThroughput,
  checkGoals,
  ensureBenchModel,
  PEER_RESULTS,
  type ThroughputResult,
} from "@expertmesh/engine";
import { loadModel } from "@expertmesh/model";
import type { ModelConfig } from "@expertmesh/model";
import { intFlag, parseCommandArgs, withUsage } from "../command-args.ts";
import { runClusterBench } from "./bench-cluster.ts";
import type { ClusterBenchReport } from "./bench-cluster.ts";

const DEFAULT_MODEL_DIR = fileURLToPath(new URL("../../../../.expertmesh/bench-model", import.meta.url));

const USAGE = `usage: expertmesh bench [options]

Benchmarks the single-process engine on the bench preset (shared/bench/perf-v3.config.json) and
prints JSON: prefill and decode tok/s per batch size, peak RSS, grouped routed experts vs one
dense MatMul of equal FLOPs, and the peers' numbers from shared/bench/README.md.

options:
  --batch LIST              batch sizes (default 1,8,32,64)
  --reps N                  timed repetitions per batch size, after one warm-up (default 3)
  --prompt-len N            prompt tokens per sequence (default 64)
  --decode-steps N          greedy decode steps (default 32)
  --threads N               onnxruntime intra-op threads (default 2)
  --max-batched-tokens N    engine step token budget (default 2048)
  --model DIR               checkpoint to use (default: make-model --preset bench, cached in
                            .expertmesh/bench-model)
  --no-experts              skip the grouped-experts vs dense MatMul measurement
  --cluster                 also measure the cluster: N expert-worker processes + this process's
                            engine with RemoteRoutedExperts, side by side with the single-process
                            engine (ratios), ping-pong micro-batches, Dispatch vs raw TCP, one-token
                            MoE round trip, FP8/BF16 wire deviation from the float32 wire
  --workers N               expert-workers for --cluster (default 2)
  --nodes N                 routing nodes the workers are spread over (default 2)
  --wire bf16|float32       dispatch/combine dtype of the measured cluster (default bf16)
  --worker-threads N        onnxruntime threads per worker (default 1)
  --ping-pong-from N        measure two micro-batches at B ≥ N (default 8)
  --deviation-prompts N     prompts of the wire-deviation check (default 8)
  --out FILE                also write the JSON to FILE
  -h, --help                show this help`;

const usageError = withUsage(USAGE);

function positiveInt(flag: string, text: string | undefined, fallback: number): number {
  return intFlag(flag, text, fallback, 1, usageError);
}

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

export async function run(args: string[]): Promise<void> {
  const values = parseCommandArgs(
    args,
    {
      batch: { type: "string" },
      reps: { type: "string" },
      "prompt-len": { type: "string" },
      "decode-steps": { type: "string" },
      threads: { type: "string" },
      "max-batched-tokens": { type: "string" },
      model: { type: "string" },
      "no-experts": { type: "boolean" },
      out: { type: "string" },
      cluster: { type: "boolean" },
      workers: { type: "string" },
      nodes: { type: "string" },
      wire: { type: "string" },
      "worker-threads": { type: "string" },
      "ping-pong-from": { type: "string" },
      "deviation-prompts": { type: "string" },
    },
    USAGE,
    usageError,
  );
  if (values === null) return;
  const batchText = values.batch ?? "1,8,32,64";
  const batchSizes = batchText.split(",").map((b) => positiveInt("batch", b.trim(), 0));
  const reps = positiveInt("reps", values.reps, 3);
  const promptLength = positiveInt("prompt-len", values["prompt-len"], 64);
  const decodeSteps = positiveInt("decode-steps", values["decode-steps"], 32);
  const threads = positiveInt("threads", values.threads, 2);
  const maxNumBatchedTokens = positiveInt("max-batched-tokens", values["max-batched-tokens"], 2048);
  const wire = values.wire ?? "bf16";
  if (wire !== "bf16" && wire !== "float32")
    throw usageError(`--wire must be bf16 or float32, got '${wire}'`);
  const workers = positiveInt("workers", values.workers, 2);
  const nodes = positiveInt("nodes", values.nodes, Math.min(2, workers));
  const workerThreads = positiveInt("worker-threads", values["worker-threads"], 1);
  const pingPongFrom = positiveInt("ping-pong-from", values["ping-pong-from"], 8);
  const deviationPrompts = positiveInt("deviation-prompts", values["deviation-prompts"], 8);

  let modelDir = values.model;
  let cached = true;
  if (modelDir === undefined) {
    let lastTenth = -1;
    const made = await ensureBenchModel(DEFAULT_MODEL_DIR, {
      onProgress: (written, total) => {
        const tenth = Math.floor((10 * written) / total);
        if (tenth !== lastTenth) log(`writing bench model: ${tenth * 10} %`);
        lastTenth = tenth;
      },
    });
    modelDir = made.dir;
    cached = made.cached;
  }

  const loadBefore = loadavg();
  const tLoad = performance.now();
  const model = await loadModel(modelDir, { threads });
  const loadS = (performance.now() - tLoad) / 1000;
  const rssAfterLoad = process.memoryUsage().rss;
  log(`loaded ${modelDir} in ${loadS.toFixed(1)} s (rss ${(rssAfterLoad / 2 ** 20).toFixed(0)} MiB)`);
  const results: Array<ThroughputResult & { rssBytes: number }> = [];
  let cluster: ClusterBenchReport | null = null;
  try {
    for (const batchSize of batchSizes) {
      const r = await benchThroughput(model, {
        batchSize,
        promptLength,
        decodeSteps,
        reps,
        maxNumBatchedTokens,
      });
      results.push({ ...r, rssBytes: process.memoryUsage().rss });
      log(
        `B=${batchSize}: prefill ${r.prefillTokS.toFixed(0)} tok/s, decode ${r.decodeTokS.toFixed(0)} tok/s`,
      );
    }
    if (values.cluster === true) {
      cluster = await runClusterBench({
        modelDir,
        local: model,
        workers,
        nodes,
        wire,
        threads,
        workerThreads,
        batchSizes,
        promptLength,
        decodeSteps,
        reps,
        maxNumBatchedTokens,
        microBatchesFrom: pingPongFrom,
        deviationPrompts,
        log,
      });
    }
  } finally {
    await model.release();
  }
  // Peak over loading and serving, before the expert measurement allocates its own weights.
  const peakRssBytes = process.resourceUsage().maxRSS * 1024;

  const c = model.config;
  const expertRows = [...new Set([...batchSizes, ...batchSizes.map((b) => b * promptLength)])].sort(
    (a, b) => a - b,
  );
  const expertCompute =
    values["no-experts"] === true
      ? null
      : await benchExpertCompute({
          hidden: c.hiddenSize,
          inter: c.moeIntermediateSize,
          numExperts: c.nRoutedExperts,
          topK: c.numExpertsPerTok,
          rows: expertRows,
          threads,
        });
  if (expertCompute !== null)
    for (const e of expertCompute)
      log(
        `experts rows=${e.rows}: grouped ${e.groupedMs.toFixed(2)} ms vs dense ${e.denseMs.toFixed(2)} ms (×${e.ratio.toFixed(2)})`,
      );

  const decode = new Map(results.map((r) => [r.batchSize, r.decodeTokS]));
  const prefill = new Map(results.map((r) => [r.batchSize, r.prefillTokS]));
  const cpu = cpus();
  const report = {
    benchmark: "expertmesh engine, single process",
    model: { dir: modelDir, cached, loadSeconds: round(loadS), params: paramCount(c) },
    protocol: {
      promptLength,
      decodeSteps,
      threads,
      reps,
      batchSizes,
      maxNumBatchedTokens,
      sampling: "greedy, EOS ignored",
      statistic: "median",
    },
    // Load averages (1/5/15 min) before and after: above the core count, other work shared the CPUs.
    machine: {
      cpus: cpu.length,
      cpuModel: cpu[0]?.model ?? "unknown",
      node: process.version,
      loadavgBefore: loadBefore.map(round),
      loadavgAfter: loadavg().map(round),
    },
    results: results.map((r) => ({
      batchSize: r.batchSize,
      prefillTokS: round(r.prefillTokS),
      decodeTokS: round(r.decodeTokS),
      bestPrefillTokS: round(r.bestPrefillTokS),
      bestDecodeTokS: round(r.bestDecodeTokS),
      prefillSteps: r.prefillSteps,
      prefillMs: r.prefillMs.map(round),
      decodeMs: r.decodeMs.map(round),
      prefillCpuMs: r.prefillCpuMs.map(round),
      decodeCpuMs: r.decodeCpuMs.map(round),
      rssBytes: r.rssBytes,
    })),
    memory: { rssAfterLoadBytes: rssAfterLoad, peakRssBytes },
    expertCompute:
      expertCompute?.map((e) => ({
        ...e,
        groupedMs: round(e.groupedMs),
        denseMs: round(e.denseMs),
        groupedGflops: round(e.groupedGflops),
        denseGflops: round(e.denseGflops),
        ratio: round(e.ratio),
      })) ?? null,
    peers: PEER_RESULTS,
    // --cluster: measured after the single-process figures above, with the single-process engine
    // re-measured side by side (ratios are of figures taken together).
    cluster: cluster === null ? null : roundDeep(cluster),
    goals: checkGoals(decode, prefill).map((g) => ({
      ...g,
      measured: g.measured === null ? null : round(g.measured),
    })),
  };
  const json = JSON.stringify(report, null, 2);
  console.log(json);
  const out = values.out;
  if (out !== undefined) await writeFile(out, `${json}\n`);
}

/** Every non-integer number in a JSON-like value rounded to 2 decimals (4 significant digits below 0.01). */
function roundDeep<T>(value: T): T {
  return JSON.parse(
    JSON.stringify(value, (_k, v: unknown) =>
      typeof v === "number" && !Number.isInteger(v)
        ? Math.abs(v) < 0.01
          ? Number(v.toPrecision(4))
          : round(v)
        : v,
    ),
  ) as T;
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

/** Parameters of the main model (embeddings, attention, MLPs, experts, norms, lm_head). */
function paramCount(c: ModelConfig): number {
  const H = c.hiddenSize;
  const qk = c.qkNopeHeadDim + c.qkRopeHeadDim;
  const attn =
    H * c.qLoraRank +
    c.qLoraRank +
    c.qLoraRank * c.numHeads * qk +
    H * (c.kvLoraRank + c.qkRopeHeadDim) +
    c.kvLoraRank +
    c.kvLoraRank * c.numHeads * (c.qkNopeHeadDim + c.vHeadDim) +
    c.numHeads * c.vHeadDim * H +
    2 * H;
  const dense = 3 * H * c.intermediateSize;
  const moe =
    (c.nRoutedExperts + c.nSharedExperts) * 3 * H * c.moeIntermediateSize +
    c.nRoutedExperts * H +
    c.nRoutedExperts;
  const layers = c.firstKDenseReplace * (attn + dense) + (c.numLayers - c.firstKDenseReplace) * (attn + moe);
  return 2 * c.vocabSize * H + layers + H;
}
