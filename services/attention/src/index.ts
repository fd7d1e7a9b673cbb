/**
 * @expertmesh/attention — the attention-and-gating node. Run it as a process (`src/main.ts`);
 * this entry point exposes its configuration registry (for docs and launchers) and its pure
 * core for tests. Services never import each other.
 */
export { attentionConfig, loadAttentionConfig, parseWorkerAddresses } from "./config.ts";
export type { AttentionConfig } from "./config.ts";
export { ServeLoop } from "./core/serve-loop.ts";
export type { EngineLoad, ServeLoopOptions } from "./core/serve-loop.ts";
export { ServeSession } from "./core/serve-session.ts";
export { RecordingCheckpoint, isRoutedExpertTensor } from "./core/recording-checkpoint.ts";
export type { TensorReadCounts } from "./core/recording-checkpoint.ts";
export type {
  SequenceEnd,
  SequenceRequest,
  SequenceToken,
  SessionListener,
  SessionOutput,
} from "./core/session-output.ts";
