import { randomUUID } from "node:crypto";
import { BatchStatus as WireBatchStatus } from "@expertmesh/proto";
import type {
  BatchItemResult as WireBatchItemResult,
  BatchJob as WireBatchJob,
  BatchService,
} from "@expertmesh/proto";
import { Code, ExpertMeshError, invalidArgument } from "@expertmesh/shared";
import type { GrpcClient } from "@expertmesh/shared";
import { resolveCall } from "./client-options.ts";
import type { ClientCallOptions, CompiledClientOptions } from "./client-options.ts";
import { toFinishReason, toTokenLogprobs, toUsage } from "./generate-chunk.ts";
import type { FinishReason, TokenLogprob, Usage } from "./generate-chunk.ts";
import { toGenerateRequestProto } from "./generate-request.ts";
import type { GenerateRequest } from "./generate-request.ts";
import { streamWithRetry, unaryWithRetry } from "./retrying-call.ts";

export type BatchStatus = "queued" | "running" | "completed" | "failed" | "cancelling" | "cancelled";

/** A batch job's state. */
export interface BatchJob {
  batchId: string;
  status: BatchStatus;
  /** True once the status is terminal (completed, failed, cancelled): nothing changes any more. */
  done: boolean;
  total: number;
  /** Items that finished generating. */
  completed: number;
  /** Items that failed for good. */
  failed: number;
  /** Token counts summed over the completed items. */
  usage: Usage;
  /** Unix epoch milliseconds; undefined while not reached. */
  createdAt: number;
  startedAt: number | undefined;
  finishedAt: number | undefined;
  /** Why the job failed (status "failed"). */
  error: ExpertMeshError | undefined;
  labels: Record<string, string>;
  maxAttempts: number;
}

/** The outcome of one item of a job. */
export interface BatchItemResult {
  /** Index into the submitted requests. */
  index: number;
  requestId: string;
  tokenIds: number[];
  text: string;
  logprobs: TokenLogprob[];
  /** "stop" or "length" for a completed item, "error" for a failed one. */
  finishReason: FinishReason;
  usage: Usage;
  /** Why the item failed (its last attempt's error). */
  error: ExpertMeshError | undefined;
  /** Attempts used. */
  attempts: number;
}

export interface SubmitBatchRequest {
  /** The prompts; results are reported by index into this list. */
  requests: readonly GenerateRequest[];
  /** Client-chosen id ([A-Za-z0-9_-], 1..64); the client makes one up when absent, so a
   * retried submit never creates two jobs. */
  batchId?: string;
  /** Attempts per prompt for retryable failures, 1..10 (default: the router's). */
  maxAttempts?: number;
  /** Free-form labels kept with the job. */
  labels?: Readonly<Record<string, string>>;
}

export interface BatchResultsPage {
  batch: BatchJob;
  /** Finished items in the requested index range, by index. */
  results: BatchItemResult[];
  /** Offset of the next page; undefined after the last. */
  nextOffset: number | undefined;
}

/** Batch jobs: many prompts run as one job, at lower priority than interactive traffic. */
export interface BatchJobs {
  /** Stores and queues a job; resolves as soon as it is queued. */
  submit(request: SubmitBatchRequest, options?: ClientCallOptions): Promise<BatchJob>;
  /** The job's status and progress (NOT_FOUND for an unknown id). */
  get(batchId: string, options?: ClientCallOptions): Promise<BatchJob>;
  /** One page of finished items, indices in [offset, offset + limit) (limit 1..1000, default 100). */
  results(
    batchId: string,
    page?: { offset?: number; limit?: number },
    options?: ClientCallOptions,
  ): Promise<BatchResultsPage>;
  /** Every finished item, page by page, by index. */
  allResults(batchId: string, options?: ClientCallOptions): AsyncIterable<BatchItemResult>;
  /** Stops the job: no new prompt is issued, generations in flight are aborted. */
  cancel(batchId: string, options?: ClientCallOptions): Promise<BatchJob>;
  /** The job's state now and after every change, until it is done. */
  watch(batchId: string, options?: ClientCallOptions): AsyncIterable<BatchJob>;
  /** Resolves with the job's final state (completed, failed or cancelled). */
  wait(batchId: string, options?: ClientCallOptions): Promise<BatchJob>;
}

const STATUS: Readonly<Partial<Record<WireBatchStatus, BatchStatus>>> = {
  [WireBatchStatus.QUEUED]: "queued",
  [WireBatchStatus.RUNNING]: "running",
  [WireBatchStatus.COMPLETED]: "completed",
  [WireBatchStatus.FAILED]: "failed",
  [WireBatchStatus.CANCELLING]: "cancelling",
  [WireBatchStatus.CANCELLED]: "cancelled",
};
const TERMINAL = new Set<BatchStatus>(["completed", "failed", "cancelled"]);

export function createBatchJobs(
  grpc: GrpcClient<typeof BatchService>,
  client: CompiledClientOptions,
): BatchJobs {
  const policy = client.retry;
  const jobs: BatchJobs = {
    async submit(request, options) {
      if (request.requests.length === 0) {
        throw invalidArgument("requests", "must be a non-empty array of generate requests");
      }
      const batchId = request.batchId ?? `batch_${randomUUID().replaceAll("-", "")}`;
      const wire = {
        batchId,
        requests: request.requests.map((r, i) =>
          toGenerateRequestProto(r, r.requestId ?? "", `requests[${i}]`),
        ),
        maxAttempts: request.maxAttempts ?? 0,
        labels: { ...request.labels },
      };
      const call = resolveCall(client, options);
      const response = await unaryWithRetry(policy, call, async (opts, attempt) => {
        try {
          return await grpc.submitBatch(wire, opts);
        } catch (error) {
          // An earlier attempt may have reached the router even though its answer was lost.
          if (attempt > 1 && ExpertMeshError.from(error).code === Code.ALREADY_EXISTS) {
            return grpc.getBatch({ batchId }, opts);
          }
          throw error;
        }
      });
      return toBatchJob(response.batch);
    },
    async get(batchId, options) {
      const response = await unaryWithRetry(policy, resolveCall(client, options), (opts) =>
        grpc.getBatch({ batchId }, opts),
      );
      return toBatchJob(response.batch);
    },
    async results(batchId, page = {}, options) {
      const response = await unaryWithRetry(policy, resolveCall(client, options), (opts) =>
        grpc.getBatchResults({ batchId, offset: page.offset ?? 0, limit: page.limit ?? 0 }, opts),
      );
      return {
        batch: toBatchJob(response.batch),
        results: response.results.map(toBatchItemResult),
        nextOffset: response.nextOffset === 0 ? undefined : response.nextOffset,
      };
    },
    async *allResults(batchId, options) {
      let offset: number | undefined = 0;
      while (offset !== undefined) {
        const page: BatchResultsPage = await jobs.results(batchId, { offset, limit: 1000 }, options);
        yield* page.results;
        offset = page.nextOffset;
      }
    },
    async cancel(batchId, options) {
      const response = await unaryWithRetry(policy, resolveCall(client, options), (opts) =>
        grpc.cancelBatch({ batchId }, opts),
      );
      return toBatchJob(response.batch);
    },
    async *watch(batchId, options) {
      const call = resolveCall(client, options);
      for await (const update of streamWithRetry(policy, call, (opts) =>
        grpc.watchBatch({ batchId }, opts),
      )) {
        yield toBatchJob(update.batch);
      }
    },
    async wait(batchId, options) {
      let last: BatchJob | undefined;
      for await (const job of jobs.watch(batchId, options)) {
        last = job;
        if (job.done) return job;
      }
      if (last !== undefined && last.done) return last;
      throw new ExpertMeshError(Code.UNAVAILABLE, `watch of ${batchId} ended before the job finished`);
    },
  };
  return jobs;
}

export function toBatchJob(job: WireBatchJob | undefined): BatchJob {
  if (job === undefined) throw new ExpertMeshError(Code.INTERNAL, "router answered without a batch job");
  const status = STATUS[job.status];
  if (status === undefined) throw new ExpertMeshError(Code.INTERNAL, `unknown batch status ${job.status}`);
  const ms = (v: bigint): number | undefined => (v === 0n ? undefined : Number(v));
  return {
    batchId: job.batchId,
    status,
    done: TERMINAL.has(status),
    total: job.total,
    completed: job.completed,
    failed: job.failed,
    usage: toUsage(job.usage),
    createdAt: Number(job.createdUnixMs),
    startedAt: ms(job.startedUnixMs),
    finishedAt: ms(job.finishedUnixMs),
    error:
      job.error === undefined
        ? undefined
        : new ExpertMeshError(job.error.code, job.error.message, { details: job.error.details }),
    labels: { ...job.labels },
    maxAttempts: job.maxAttempts,
  };
}

export function toBatchItemResult(result: WireBatchItemResult): BatchItemResult {
  return {
    index: result.index,
    requestId: result.requestId,
    tokenIds: result.tokenIds,
    text: result.text,
    logprobs: toTokenLogprobs(result.tokenIds, result.logprobs),
    finishReason: toFinishReason(result.finishReason) ?? "error",
    usage: toUsage(result.usage),
    error:
      result.error === undefined
        ? undefined
        : new ExpertMeshError(result.error.code, result.error.message, { details: result.error.details }),
    attempts: result.attempts,
  };
}
