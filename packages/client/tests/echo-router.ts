/**
 * The server side of the SDK tests: a real gRPC server (createGrpcServer) with a small,
 * deterministic InferenceService and BatchService. Generation "echoes": every prompt character
 * (or token id) becomes one generated token whose id is its code point, one token per chunk,
 * then a final chunk. Tests steer failures and pacing through `behavior` and read what the
 * server saw in `calls`.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  BatchService,
  BatchStatus,
  FinishReason,
  InferenceService,
  MemberStatus,
  RebalanceMode,
  WireDtype,
} from "@expertmesh/proto";
import type {
  BatchItemResultSchema,
  BatchJobSchema,
  GenerateRequest,
  GenerateResponseSchema,
  GetClusterStateResponseSchema,
} from "@expertmesh/proto";
import { Code, ExpertMeshError, createGrpcServer } from "@expertmesh/shared";
import type { CallContext, GrpcServer, ServiceImpl } from "@expertmesh/shared";
import type { ServerCredentials } from "@grpc/grpc-js";

type Chunk = MessageInitShape<typeof GenerateResponseSchema>;

/** How the next Generate calls behave. */
export interface EchoBehavior {
  /** The first `times` calls fail with `code` before sending anything. */
  failBeforeFirstChunk?: { code: Code; message: string; times: number };
  /** Every call fails with `code` after sending `after` chunks. */
  failAfterChunks?: { code: Code; message: string; after: number };
  /** Pause before each chunk (for deadlines and cancellation). */
  chunkDelayMs?: number;
  /** SubmitBatch stores the job, then answers UNAVAILABLE this many times (a lost answer). */
  loseSubmitAnswers?: number;
}

/** What the server saw of one Generate call. */
export interface GenerateCall {
  request: GenerateRequest;
  metadata: Readonly<Record<string, string>>;
  receivedAt: number;
  /** Resolves with the abort reason's code once the call is cancelled or expires. */
  aborted: Promise<Code>;
  chunksSent: number;
}

export interface EchoRouter {
  readonly address: string;
  readonly port: number;
  behavior: EchoBehavior;
  readonly calls: GenerateCall[];
  stop(): Promise<void>;
}

export interface EchoRouterOptions {
  credentials?: ServerCredentials;
  /** Host the server binds ("127.0.0.1" by default). */
  host?: string;
}

export function promptTokens(request: GenerateRequest): number[] {
  if (request.prompt.case === "text") return [...request.prompt.value].map((c) => c.codePointAt(0) ?? 0);
  if (request.prompt.case === "tokenIds") return [...request.prompt.value.ids];
  throw new ExpertMeshError(Code.INVALID_ARGUMENT, "prompt: exactly one of text or token_ids is required", {
    details: { field: "prompt" },
  });
}

/** The echo generation of one request, as wire chunks (shared by Generate and the batch jobs). */
export async function* echoChunks(
  request: GenerateRequest,
  context: { signal: AbortSignal },
  behavior: EchoBehavior,
  onChunk: () => void = () => undefined,
): AsyncGenerator<Chunk> {
  const prompt = promptTokens(request);
  const maxTokens = request.sampling?.maxTokens ?? 0;
  const generated = maxTokens > 0 ? prompt.slice(0, maxTokens) : prompt;
  const withLogprobs = request.logprobs || request.topLogprobs > 0;
  let sent = 0;
  const pace = async (): Promise<void> => {
    if (behavior.chunkDelayMs !== undefined)
      await sleep(behavior.chunkDelayMs, undefined, { signal: context.signal });
    const fail = behavior.failAfterChunks;
    if (fail !== undefined && sent >= fail.after) throw new ExpertMeshError(fail.code, fail.message);
  };
  for (const [i, id] of generated.entries()) {
    await pace();
    sent++;
    onChunk();
    yield {
      requestId: request.requestId,
      tokenIds: [id],
      text: request.skipDetokenize ? "" : String.fromCodePoint(id),
      logprobs: withLogprobs
        ? [
            {
              logprob: -(i + 1) / 10,
              topTokenIds: Array.from({ length: request.topLogprobs }, (_, k) => id + k),
              topLogprobs: Array.from({ length: request.topLogprobs }, (_, k) => -(i + 1) / 10 - k),
            },
          ]
        : [],
    };
  }
  await pace();
  onChunk();
  yield {
    requestId: request.requestId,
    finishReason: generated.length < prompt.length ? FinishReason.LENGTH : FinishReason.STOP,
    usage: { promptTokens: prompt.length, completionTokens: generated.length },
  };
}

function abortedCode(signal: AbortSignal): Promise<Code> {
  return new Promise((resolve) => {
    const settle = (): void => resolve(ExpertMeshError.from(signal.reason).code);
    if (signal.aborted) settle();
    else signal.addEventListener("abort", settle, { once: true });
  });
}

/** A fixed small cluster: 2 attention nodes, 2 workers on 2 nodes, one MoE layer of 4 experts (expert 0 replicated). */
export const CLUSTER_STATE: MessageInitShape<typeof GetClusterStateResponseSchema> = {
  model: {
    name: "echo-moe",
    numLayers: 2,
    firstKDenseReplace: 1,
    hiddenSize: 64,
    vocabSize: 1_114_112,
    nRoutedExperts: 4,
    nSharedExperts: 1,
    numExpertsPerTok: 2,
    nGroup: 2,
    topkGroup: 1,
    maxContextLength: 4096,
    weightDtype: "bf16",
    dispatchDtype: WireDtype.BF16,
    combineDtype: WireDtype.BF16,
  },
  placementVersion: 3,
  rebalanceMode: RebalanceMode.PLACEMENT,
  attentionNodes: [
    {
      id: "attention-1",
      address: "10.0.0.2:50061",
      status: MemberStatus.SERVING,
      running: 5,
      waiting: 2,
      freeKvBlocks: 25,
      totalKvBlocks: 100,
    },
    {
      id: "attention-0",
      address: "10.0.0.1:50061",
      status: MemberStatus.SERVING,
      running: 1,
      waiting: 0,
      freeKvBlocks: 90,
      totalKvBlocks: 100,
    },
    {
      id: "attention-2",
      address: "10.0.0.3:50061",
      status: MemberStatus.DRAINING,
      running: 0,
      waiting: 0,
      freeKvBlocks: 100,
      totalKvBlocks: 100,
    },
  ],
  workers: [
    {
      workerId: "worker-0",
      node: "node-a",
      address: "10.0.1.1:50071",
      status: MemberStatus.SERVING,
      slices: [{ layer: 1, physicalExpertIds: [0, 1, 4], logicalExpertIds: [0, 1, 0] }],
    },
    {
      workerId: "worker-1",
      node: "node-b",
      address: "10.0.1.2:50071",
      status: MemberStatus.SERVING,
      slices: [{ layer: 1, physicalExpertIds: [2, 3], logicalExpertIds: [2, 3] }],
    },
  ],
  // physical 4 is a replica of logical expert 0 (hot), held by worker-0.
  placement: [{ layer: 1, physicalToLogical: [0, 1, 2, 3, 0], physicalToWorker: [0, 0, 1, 1, 0] }],
  lastWindow: {
    windowId: 41n,
    startUnixMs: 1_700_000_000_000n,
    endUnixMs: 1_700_000_010_000n,
    layers: [{ layer: 1, physicalRows: [30n, 10n, 20n, 20n, 40n] }],
  },
};

interface StoredBatch {
  job: MessageInitShape<typeof BatchJobSchema> & {
    batchId: string;
    total: number;
    completed: number;
    failed: number;
  };
  results: MessageInitShape<typeof BatchItemResultSchema>[];
  abort: AbortController;
  changed: () => void;
  waiters: Set<() => void>;
}

/**
 * An in-memory BatchService over the echo generation (the real one, on BullMQ, lives in the
 * router): items run one after another as soon as the job is submitted.
 */
function echoBatchService(behavior: () => EchoBehavior): ServiceImpl<typeof BatchService> {
  const batches = new Map<string, StoredBatch>();
  const find = (batchId: string): StoredBatch => {
    const batch = batches.get(batchId);
    if (batch === undefined) throw new ExpertMeshError(Code.NOT_FOUND, `batch ${batchId} not found`);
    return batch;
  };
  const run = async (batch: StoredBatch, requests: GenerateRequest[]): Promise<void> => {
    batch.job.status = BatchStatus.RUNNING;
    batch.job.startedUnixMs = BigInt(Date.now());
    batch.changed();
    for (const [index, request] of requests.entries()) {
      if (batch.abort.signal.aborted) break;
      const tokenIds: number[] = [];
      let text = "";
      for await (const chunk of echoChunks(request, batch.abort, behavior())) {
        tokenIds.push(...(chunk.tokenIds ?? []));
        text += chunk.text ?? "";
        if (chunk.finishReason !== undefined) {
          batch.results.push({
            index,
            requestId: request.requestId || `${batch.job.batchId}-${index}`,
            tokenIds,
            text,
            finishReason: chunk.finishReason,
            usage: chunk.usage,
            attempts: 1,
          });
          batch.job.completed++;
        }
      }
      batch.changed();
    }
    batch.job.status = batch.abort.signal.aborted ? BatchStatus.CANCELLED : BatchStatus.COMPLETED;
    batch.job.finishedUnixMs = BigInt(Date.now());
    batch.changed();
  };
  return {
    submitBatch(request) {
      if (request.requests.length === 0) {
        throw new ExpertMeshError(Code.INVALID_ARGUMENT, "requests: must not be empty", {
          details: { field: "requests" },
        });
      }
      const batchId = request.batchId || `batch_${batches.size + 1}`;
      if (batches.has(batchId))
        throw new ExpertMeshError(Code.ALREADY_EXISTS, `batch ${batchId} already exists`);
      const waiters = new Set<() => void>();
      const batch: StoredBatch = {
        job: {
          batchId,
          status: BatchStatus.QUEUED,
          total: request.requests.length,
          completed: 0,
          failed: 0,
          createdUnixMs: BigInt(Date.now()),
          labels: request.labels,
          maxAttempts: request.maxAttempts || 3,
        },
        results: [],
        abort: new AbortController(),
        waiters,
        changed: () => {
          for (const wake of [...waiters]) wake();
        },
      };
      batches.set(batchId, batch);
      void run(batch, request.requests).catch((error: unknown) => {
        const failure = ExpertMeshError.from(error);
        batch.job.status = BatchStatus.FAILED;
        batch.job.error = { code: failure.code, message: failure.message };
        batch.changed();
      });
      const current = behavior();
      if ((current.loseSubmitAnswers ?? 0) > 0) {
        current.loseSubmitAnswers = (current.loseSubmitAnswers ?? 0) - 1;
        throw new ExpertMeshError(Code.UNAVAILABLE, "connection reset before the answer");
      }
      return { batch: { ...batch.job } };
    },
    getBatch: (request) => ({ batch: { ...find(request.batchId).job } }),
    getBatchResults(request) {
      const batch = find(request.batchId);
      const limit = request.limit || 100;
      const end = request.offset + limit;
      return {
        batch: { ...batch.job },
        results: batch.results.filter((r) => (r.index ?? 0) >= request.offset && (r.index ?? 0) < end),
        nextOffset: end < batch.job.total ? end : 0,
      };
    },
    cancelBatch(request) {
      const batch = find(request.batchId);
      batch.abort.abort(new ExpertMeshError(Code.CANCELLED, "batch cancelled"));
      return { batch: { ...batch.job } };
    },
    async *watchBatch(request, context: CallContext) {
      const batch = find(request.batchId);
      for (;;) {
        const changed = new Promise<void>((resolve) => batch.waiters.add(resolve));
        yield { batch: { ...batch.job } };
        const status = batch.job.status;
        if (
          status === BatchStatus.COMPLETED ||
          status === BatchStatus.FAILED ||
          status === BatchStatus.CANCELLED
        )
          return;
        await Promise.race([changed, abortedCode(context.signal)]);
        if (context.signal.aborted) return;
      }
    },
  };
}

export async function startEchoRouter(options: EchoRouterOptions = {}): Promise<EchoRouter> {
  const calls: GenerateCall[] = [];
  const router: { -readonly [K in keyof EchoRouter]: EchoRouter[K] } = {
    address: "",
    port: 0,
    behavior: {},
    calls,
    stop: () => server.shutdown(200),
  };
  const inference: ServiceImpl<typeof InferenceService> = {
    async *generate(request, context) {
      const call: GenerateCall = {
        request,
        metadata: context.metadata,
        receivedAt: Date.now(),
        aborted: abortedCode(context.signal),
        chunksSent: 0,
      };
      calls.push(call);
      const behavior = router.behavior;
      const fail = behavior.failBeforeFirstChunk;
      if (fail !== undefined && fail.times > 0) {
        fail.times--;
        throw new ExpertMeshError(fail.code, fail.message);
      }
      yield* echoChunks(request, context, behavior, () => call.chunksSent++);
    },
    getClusterState: () => CLUSTER_STATE,
  };
  const server: GrpcServer = createGrpcServer(
    options.credentials === undefined ? {} : { credentials: options.credentials },
  )
    .addService(InferenceService, inference)
    .addService(
      BatchService,
      echoBatchService(() => router.behavior),
    );
  const host = options.host ?? "127.0.0.1";
  const port = await server.bind(`${host}:0`);
  router.port = port;
  router.address = `${host}:${port}`;
  return router;
}
