import { Code, ExpertMeshError } from "@expertmesh/shared";
import { EngineCore } from "../engine-core.ts";
import type { EngineModel } from "../model-runner.ts";
import { median } from "./median.ts";
import { benchPrompts } from "./throughput-bench.ts";

/** One system measured by `benchSystemsTogether`: a model and how the engine drives it. */
export interface BenchSystem {
  name: string;
  model: EngineModel;
  /** The engine's micro-batches per step (2: ping-pong; see ModelRunnerOptions). */
  microBatches?: 1 | 2;
  /** Measured only at batch sizes ≥ this (default 1). */
  minBatch?: number;
}

export interface SystemsBenchOptions {
  batchSizes: readonly number[];
  promptLength: number;
  decodeSteps: number;
  /** Timed repetitions per (batch size, system), after one untimed warm-up of each. */
  reps: number;
  maxNumBatchedTokens: number;
  seed?: number;
  /** Called after each batch size (progress). */
  onBatch?: (row: SystemsBenchRow) => void;
}

export interface SystemFigures {
  prefillTokS: number;
  decodeTokS: number;
  prefillMs: number[];
  decodeMs: number[];
}

export interface SystemsBenchRow {
  batchSize: number;
  /** system name → its figures at this batch size. */
  systems: Record<string, SystemFigures>;
}

/**
 * The bench protocol (shared/bench/README.md) on several systems measured together: per batch
 * size, the repetitions of all systems are interleaved (rep 1 of each, then rep 2 of each, …), so
 * that load from other work on the machine hits every system alike and their ratios mean
 * something on a noisy machine. Each run is a fresh EngineCore with the same B prompts.
 */
export async function benchSystemsTogether(
  systems: readonly BenchSystem[],
  options: SystemsBenchOptions,
): Promise<SystemsBenchRow[]> {
  const rows: SystemsBenchRow[] = [];
  for (const B of options.batchSizes) {
    const active = systems.filter((s) => B >= (s.minBatch ?? 1));
    const times = new Map(
      active.map((s) => [s.name, { prefillMs: [] as number[], decodeMs: [] as number[] }]),
    );
    for (let rep = -1; rep < options.reps; rep++) {
      for (const s of active) {
        const t = await timeOneRun(s, B, options);
        if (rep < 0) continue; // warm-up: compiles the graphs this batch shape needs
        const acc = times.get(s.name)!;
        acc.prefillMs.push(t.prefillMs);
        acc.decodeMs.push(t.decodeMs);
      }
    }
    const row: SystemsBenchRow = { batchSize: B, systems: {} };
    for (const [name, t] of times) {
      row.systems[name] = {
        prefillTokS: (B * options.promptLength) / (median(t.prefillMs) / 1000),
        decodeTokS: (B * options.decodeSteps) / (median(t.decodeMs) / 1000),
        prefillMs: t.prefillMs,
        decodeMs: t.decodeMs,
      };
    }
    options.onBatch?.(row);
    rows.push(row);
  }
  return rows;
}

/** Prefill (until every sequence has its first token) and decode wall times of one run. */
async function timeOneRun(
  system: BenchSystem,
  B: number,
  options: SystemsBenchOptions,
): Promise<{ prefillMs: number; decodeMs: number }> {
  const { promptLength, decodeSteps } = options;
  const prompts = benchPrompts(B, promptLength, system.model.config.vocabSize, options.seed);
  const blockSize = 16;
  const core = new EngineCore(system.model, {
    blockSize,
    numKvBlocks: B * Math.ceil((promptLength + decodeSteps + 1) / blockSize),
    maxNumBatchedTokens: options.maxNumBatchedTokens,
    maxNumSeqs: Math.max(B, 1),
    microBatches: system.microBatches ?? 1,
  });
  const t0 = performance.now();
  prompts.forEach((p, i) =>
    core.addRequest({
      requestId: `b${i}`,
      promptTokenIds: p,
      sampling: { temperature: 0, maxTokens: decodeSteps + 1, ignoreEos: true },
    }),
  );
  let started = 0;
  while (started < B) {
    const { outputs } = await core.step();
    for (const o of outputs) {
      if (o.finishReason === "error")
        throw new ExpertMeshError(
          Code.INTERNAL,
          `${system.name}: request ${o.requestId} failed: ${o.error?.message ?? "unknown"}`,
          o.error === undefined ? {} : { cause: o.error },
        );
      if (o.numOutputTokens === 1 && o.newTokenIds.length === 1) started++;
    }
  }
  const t1 = performance.now();
  while (core.hasUnfinishedRequests()) {
    const { outputs } = await core.step();
    for (const o of outputs)
      if (o.finishReason === "error")
        throw new ExpertMeshError(
          Code.INTERNAL,
          `${system.name}: request ${o.requestId} failed: ${o.error?.message ?? "unknown"}`,
          o.error === undefined ? {} : { cause: o.error },
        );
  }
  const t2 = performance.now();
  return { prefillMs: t1 - t0, decodeMs: t2 - t1 };
}
