/**
 * @expertmesh/client — the SDK for ExpertMesh's public gRPC API: streaming generation with
 * deadlines, cancellation and safe retries, cluster state with load summaries, and batch jobs.
 * Failures are ExpertMeshError with the router's gRPC code, message and details.
 */
export { createExpertMeshClient } from "./expert-mesh-client.ts";
export type { ExpertMeshClient } from "./expert-mesh-client.ts";
export type { ClientCallOptions, ExpertMeshClientOptions, Pem, TlsOptions } from "./client-options.ts";
export { DEFAULT_RETRY_POLICY, RETRYABLE_CODES, backoffMs, compileRetryPolicy } from "./retry-policy.ts";
export type { RetryOptions, RetryPolicy } from "./retry-policy.ts";
export type { GenerateRequest } from "./generate-request.ts";
export type { Completion, FinishReason, GenerateChunk, TokenLogprob, Usage } from "./generate-chunk.ts";
export { attentionNodes, expertLoad, toClusterState } from "./cluster-state.ts";
export type {
  AttentionNode,
  ClusterState,
  ExpertLoadSummary,
  LayerLoadSummary,
  LayerPlacement,
  LoadWindow,
  MemberStatus,
  ModelInfo,
  RebalanceMode,
  WireFormat,
  Worker,
} from "./cluster-state.ts";
export type {
  BatchItemResult,
  BatchJob,
  BatchJobs,
  BatchResultsPage,
  BatchStatus,
  SubmitBatchRequest,
} from "./batch-jobs.ts";
// The one error type, so callers can match codes without another import.
export { Code, ExpertMeshError } from "@expertmesh/shared";
