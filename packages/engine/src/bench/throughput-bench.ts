import { EngineCore } from "../engine-core.ts";
import type { EngineModel } from "../model-runner.ts";
import { SeededRng } from "../seeded-rng.ts";
import { median } from "./median.ts";

export interface ThroughputBenchOptions {
  /** Sequences per run. */
  batchSize: number;
  promptLength: number;
  /** Greedy decode steps after the prefill (each gives every sequence one token). */
  decodeSteps: number;
  /** Timed repetitions (after one untimed warm-up run). */
  reps: number;
  /** Step token budget; ≥ batchSize × promptLength keeps the prefill in one step. */
  maxNumBatchedTokens: number;
  /** Prompt seed: every run uses the same B different prompts. */
  seed?: number;
}

export interface ThroughputResult {
  batchSize: number;
  /** Median over reps of B × promptLength / (time until every sequence has its first token). */
  prefillTokS: number;
  /** Median over reps of B × decodeSteps / (time of the decode steps). */
  decodeTokS: number;
  /** From the fastest rep: closer to an idle machine's speed when other work shares the cores. */
  bestPrefillTokS: number;
  bestDecodeTokS: number;
  prefillSteps: number;
  prefillMs: number[];
  decodeMs: number[];
  /** Process CPU time (all threads) of each timed phase: wall ≫ cpu / threads means a contended machine. */
  prefillCpuMs: number[];
  decodeCpuMs: number[];
}

/** B different prompts of ids in [2, vocab) (0/1 are BOS/EOS in the bench config). */
export function benchPrompts(
  batchSize: number,
  promptLength: number,
  vocabSize: number,
  seed = 0,
): number[][] {
  const rng = new SeededRng(seed);
  return Array.from({ length: batchSize }, () =>
    Array.from({ length: promptLength }, () => 2 + (rng.nextUint32() % (vocabSize - 2))),
  );
}

/**
 * The bench protocol (shared/bench/README.md) on the engine: B sequences with different
 * prompts, prefill, then `decodeSteps` greedy steps with EOS ignored; a fresh EngineCore per run.
 */
export async function benchThroughput(
  model: EngineModel,
  options: ThroughputBenchOptions,
): Promise<ThroughputResult> {
  const { batchSize: B, promptLength, decodeSteps } = options;
  const prompts = benchPrompts(B, promptLength, model.config.vocabSize, options.seed);
  const blockSize = 16;
  const numKvBlocks = B * Math.ceil((promptLength + decodeSteps + 1) / blockSize);
  const prefillMs: number[] = [];
  const decodeMs: number[] = [];
  const prefillCpuMs: number[] = [];
  const decodeCpuMs: number[] = [];
  let prefillSteps = 0;
  for (let rep = -1; rep < options.reps; rep++) {
    const core = new EngineCore(model, {
      blockSize,
      numKvBlocks,
      maxNumBatchedTokens: options.maxNumBatchedTokens,
      maxNumSeqs: Math.max(B, 1),
    });
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    prompts.forEach((p, i) =>
      core.addRequest({
        requestId: `b${i}`,
        promptTokenIds: p,
        sampling: { temperature: 0, maxTokens: decodeSteps + 1, ignoreEos: true },
      }),
    );
    let started = 0;
    let steps = 0;
    while (started < B) {
      const { outputs } = await core.step();
      steps++;
      for (const o of outputs) if (o.numOutputTokens === 1 && o.newTokenIds.length === 1) started++;
    }
    const t1 = performance.now();
    const c1 = process.cpuUsage();
    while (core.hasUnfinishedRequests()) await core.step();
    const t2 = performance.now();
    const c2 = process.cpuUsage();
    if (rep < 0) continue; // warm-up: compiles the graphs this batch shape needs
    prefillSteps = steps;
    prefillMs.push(t1 - t0);
    decodeMs.push(t2 - t1);
    prefillCpuMs.push(cpuMs(c0, c1));
    decodeCpuMs.push(cpuMs(c1, c2));
  }
  return {
    batchSize: B,
    prefillTokS: (B * promptLength) / (median(prefillMs) / 1000),
    decodeTokS: (B * decodeSteps) / (median(decodeMs) / 1000),
    bestPrefillTokS: (B * promptLength) / (Math.min(...prefillMs) / 1000),
    bestDecodeTokS: (B * decodeSteps) / (Math.min(...decodeMs) / 1000),
    prefillSteps,
    prefillMs,
    decodeMs,
    prefillCpuMs,
    decodeCpuMs,
  };
}

function cpuMs(from: NodeJS.CpuUsage, to: NodeJS.CpuUsage): number {
  return (to.user - from.user + to.system - from.system) / 1000;
}
