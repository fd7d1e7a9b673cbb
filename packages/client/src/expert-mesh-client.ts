import { randomUUID } from "node:crypto";
import { BatchService, InferenceService } from "@expertmesh/proto";
import { createGrpcChannel, createGrpcClient } from "@expertmesh/shared";
import { createBatchJobs } from "./batch-jobs.ts";
import type { BatchJobs } from "./batch-jobs.ts";
import { compileClientOptions, resolveCall } from "./client-options.ts";
import type { ClientCallOptions, ExpertMeshClientOptions } from "./client-options.ts";
import { attentionNodes, expertLoad, toClusterState } from "./cluster-state.ts";
import type { AttentionNode, ClusterState, ExpertLoadSummary } from "./cluster-state.ts";
import { collectCompletion, toGenerateChunk } from "./generate-chunk.ts";
import type { Completion, GenerateChunk } from "./generate-chunk.ts";
import { toGenerateRequestProto } from "./generate-request.ts";
import type { GenerateRequest } from "./generate-request.ts";
import { streamWithRetry, unaryWithRetry } from "./retrying-call.ts";

/** A connection to an ExpertMesh router. */
export interface ExpertMeshClient {
  /** The router's address. */
  readonly address: string;
  /**
   * Streams one generation: chunks of new tokens, then a final chunk with finishReason and
   * usage. Retried (UNAVAILABLE, RESOURCE_EXHAUSTED) only until the first chunk arrives; a
   * failure after that is thrown as is. Breaking out of the loop or aborting `signal` cancels it.
   */
  generate(request: GenerateRequest, options?: ClientCallOptions): AsyncIterable<GenerateChunk>;
  /** Runs one generation to its end and returns it whole. */
  complete(request: GenerateRequest, options?: ClientCallOptions): Promise<Completion>;
  /** Topology, placement and the last load window, as the router sees them. */
  clusterState(options?: ClientCallOptions): Promise<ClusterState>;
  /** The attention nodes, serving and least loaded first. */
  attentionNodes(options?: ClientCallOptions): Promise<AttentionNode[]>;
  /** Per-layer expert load of the last window (undefined before the first window closes). */
  expertLoad(options?: ClientCallOptions): Promise<ExpertLoadSummary | undefined>;
  /** Batch jobs (the router's BatchService). */
  readonly batches: BatchJobs;
  /** Closes the connection; calls still open fail with CANCELLED or UNAVAILABLE. */
  close(): void;
}

/**
 * Connects to a router. The connection is made lazily on the first call; options are validated
 * here (INVALID_ARGUMENT for a bad one).
 */
export function createExpertMeshClient(options: ExpertMeshClientOptions): ExpertMeshClient {
  const compiled = compileClientOptions(options);
  const channel = createGrpcChannel(compiled.address, {
    credentials: compiled.credentials,
    channelOptions: compiled.channelOptions,
  });
  const inference = createGrpcClient(InferenceService, channel);
  const batch = createGrpcClient(BatchService, channel);
  const policy = compiled.retry;

  const generate = (
    request: GenerateRequest,
    callOptions?: ClientCallOptions,
  ): AsyncIterable<GenerateChunk> => {
    // Validated now, so a bad request throws where it is made, not at the first `next()`.
    const wire = toGenerateRequestProto(request, request.requestId ?? randomUUID());
    return {
      [Symbol.asyncIterator]: () => {
        const call = resolveCall(compiled, callOptions);
        const chunks = streamWithRetry(policy, call, (opts) => inference.generate(wire, opts));
        return mapAsync(chunks, toGenerateChunk);
      },
    };
  };

  const clusterState = async (callOptions?: ClientCallOptions): Promise<ClusterState> =>
    toClusterState(
      await unaryWithRetry(policy, resolveCall(compiled, callOptions), (opts) =>
        inference.getClusterState({}, opts),
      ),
    );

  return {
    address: compiled.address,
    generate,
    // async, so that a bad request is a rejected promise here, like every other failure.
    complete: async (request, callOptions) => {
      const requestId = request.requestId ?? randomUUID();
      return collectCompletion(generate({ ...request, requestId }, callOptions), requestId);
    },
    clusterState,
    attentionNodes: async (callOptions) => attentionNodes(await clusterState(callOptions)),
    expertLoad: async (callOptions) => expertLoad(await clusterState(callOptions)),
    batches: createBatchJobs(batch, compiled),
    close: () => channel.close(),
  };
}

async function* mapAsync<A, B>(
  source: AsyncIterable<A>,
  map: (a: A) => B,
): AsyncGenerator<B, void, undefined> {
  for await (const item of source) yield map(item);
}
