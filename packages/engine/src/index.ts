export { KvBlockPool } from "./kv-block-pool.ts";
export type { KvBlockAllocator, KvBlockPoolOptions } from "./kv-block-pool.ts";
export { SeededRng } from "./seeded-rng.ts";
export { compileSamplingParams, DEFAULT_MAX_LOGPROBS } from "./sampling-params.ts";
export type { SamplingLimits, SamplingOptions, SamplingParams } from "./sampling-params.ts";
export { Sampler, argmax, computeLogprobs, logSumExp } from "./sampler.ts";
export type { SampleLogprobs, SamplerOutput, TokenLogprob } from "./sampler.ts";
export { EngineRequest } from "./engine-request.ts";
export type { FinishReason, RequestStatus } from "./engine-request.ts";
export { checkStop } from "./check-stop.ts";
export { Scheduler } from "./scheduler.ts";
export type { SchedulerOptions, SchedulerUpdate } from "./scheduler.ts";
export type { ModelRunnerOutput, ScheduledSequence, SchedulerOutput } from "./scheduler-output.ts";
export { ModelRunner } from "./model-runner.ts";
export type { EngineModel } from "./model-runner.ts";
export { EngineCore } from "./engine-core.ts";
export type {
  AddRequestParams,
  EngineCoreOptions,
  EngineCoreOutput,
  EngineCoreOutputs,
  StepStats,
} from "./engine-core.ts";
export { Engine } from "./engine.ts";
export type { EngineOptions, GenerateOptions } from "./engine.ts";
export { ensureBenchModel } from "./bench/bench-model.ts";
export type { EnsureBenchModelOptions } from "./bench/bench-model.ts";
export { benchPrompts, benchThroughput } from "./bench/throughput-bench.ts";
export type { ThroughputBenchOptions, ThroughputResult } from "./bench/throughput-bench.ts";
export { benchExpertCompute } from "./bench/expert-compute-bench.ts";
export type { ExpertComputeBenchOptions, ExpertComputeResult } from "./bench/expert-compute-bench.ts";
export { checkGoals, PEER_RESULTS } from "./bench/peer-results.ts";
export type { GoalCheck, PeerResult } from "./bench/peer-results.ts";
export { median } from "./bench/median.ts";
export type { ModelRunnerOptions } from "./model-runner.ts";
export { benchSystemsTogether } from "./bench/cluster-bench.ts";
export type {
  BenchSystem,
  SystemFigures,
  SystemsBenchOptions,
  SystemsBenchRow,
} from "./bench/cluster-bench.ts";
export { measureWireDeviation } from "./bench/cluster-wire-deviation.ts";
export type { DeviationModel, DeviationVariant, WireDeviation } from "./bench/cluster-wire-deviation.ts";
