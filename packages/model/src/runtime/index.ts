// Public surface of the exact DeepSeek-V3 forward pass (runtime), its ONNX graph builder,
// the contiguous latent KV store and `inspect`.
export { loadModel, DeepSeekModel } from "./deepseek-model.ts";
export type { LoadModelOptions } from "./deepseek-model.ts";
export type {
  ForwardBatch,
  ForwardCapture,
  ForwardOptions,
  ForwardResult,
  LogitsWanted,
  MoeLayerCapture,
  SequenceChunk,
} from "./forward-batch.ts";
export { LocalRoutedExperts, loadRoutedExperts, moeLayers } from "./routed-experts-backend.ts";
export type { ExpertSelection, ExpertSlice, RoutedExpertsBackend } from "./routed-experts-backend.ts";
export { GroupedExperts, GroupedExpertsSessions, groupedExpertsGraph } from "./grouped-experts.ts";
export type { ExpertWeights } from "./grouped-experts.ts";
export { routeTokens } from "./routing.ts";
export type { RoutingParams, RoutingResult } from "./routing.ts";
export { ropeParams, RopeTables } from "./rope.ts";
export type { RopeParams } from "./rope.ts";
export { modelDims } from "./model-graphs.ts";
export type { ModelDims } from "./model-graphs.ts";
export { GraphBuilder, floatAttr } from "../onnx/graph-builder.ts";
export type { AttrInput, OnnxElementType, OpOptions } from "../onnx/graph-builder.ts";
export { createSession } from "../onnx/ort-session.ts";
export type { SessionOptions } from "../onnx/ort-session.ts";
export { ContiguousKvStore } from "../kv/contiguous-kv-store.ts";
export type { ContiguousKvStoreOptions } from "../kv/contiguous-kv-store.ts";
export type { LatentKvStore } from "../kv/latent-kv-store.ts";
export { inspectPrompts, top5 } from "../inspect/inspect.ts";
export type { InspectOptions } from "../inspect/inspect.ts";
export { parsePromptsFile, forcedTokensFromResult } from "../inspect/prompts-file.ts";
export type { InspectPrompt } from "../inspect/prompts-file.ts";
export { shortestF32 } from "../inspect/inspect-report.ts";
export type { InspectReport, PromptReport } from "../inspect/inspect-report.ts";
