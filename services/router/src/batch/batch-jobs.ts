/**
 * What the front ends (gRPC BatchService, HTTP /v1/batch_jobs) do with batch jobs: submit
 * (validate, store, enqueue), read, page through results, cancel, watch. Any router can serve
 * these for any job: the state is in Redis, and the job runs on whichever router's worker took it.
 */
import { randomUUID } from "node:crypto";
import { Queue } from "bullmq";
import type { GenerateRequest, SubmitBatchRequest } from "@expertmesh/proto";
import { Code, ExpertMeshError, invalidArgument } from "@expertmesh/shared";
import type { GenerationService } from "../core/generation.ts";
import type { BatchEvents } from "./batch-events.ts";
import { toBatchGenerationRequest } from "./batch-item.ts";
import { checkBatchId } from "./batch-keys.ts";
import { MAX_ATTEMPTS } from "./batch-options.ts";
import type { CompiledBatchOptions } from "./batch-options.ts";
import { TERMINAL_STATUSES } from "./batch-scripts.ts";
import { toBatchJobProto } from "./batch-store.ts";
import type { BatchItemResultInit, BatchJobInit, BatchStore, StoredJob } from "./batch-store.ts";
import type { BatchQueueData } from "./batch-worker.ts";

export interface BatchJobsDeps {
  readonly store: BatchStore;
  readonly events: BatchEvents;
  /** For the served model's name (items are validated against it at submit). */
  readonly generation: Pick<GenerationService, "model">;
  readonly options: CompiledBatchOptions;
  /** Redis for BullMQ's queue connection. */
  readonly redisUrl: string;
}

export interface BatchResultsPage {
  readonly batch: BatchJobInit;
  readonly results: BatchItemResultInit[];
  /** 0 when the page reached the end of the job. */
  readonly nextOffset: number;
}

const MAX_LABELS = 32;
const MAX_LABEL_KEY = 64;
const MAX_LABEL_VALUE = 256;
const DEFAULT_PAGE = 100;
const MAX_PAGE = 1_000;

export class BatchJobs {
  readonly #deps: BatchJobsDeps;
  readonly #queue: Queue<BatchQueueData>;

  constructor(deps: BatchJobsDeps) {
    this.#deps = deps;
    const keys = deps.store.keys;
    this.#queue = new Queue<BatchQueueData>(keys.queueName, {
      connection: { url: deps.redisUrl },
      prefix: keys.bullPrefix,
      defaultJobOptions: {
        // Attempts of the job's machinery (a Redis failure mid-run); items have their own retries.
        attempts: 3,
        backoff: { type: "exponential", delay: 2_000 },
        // The batch store keeps the job's state; BullMQ's copy is not needed once it ended.
        removeOnComplete: true,
        removeOnFail: true,
      },
    });
  }

  /** Validates, stores and enqueues a job; returns it as stored (queued). */
  async submit(request: SubmitBatchRequest): Promise<BatchJobInit> {
    const { options, store } = this.#deps;
    const batchId =
      request.batchId === "" ? `batch_${randomUUID().replaceAll("-", "")}` : checkBatchId(request.batchId);
    const n = request.requests.length;
    if (n === 0) throw invalidArgument("requests", "a batch job needs at least one request");
    if (n > options.maxItems) {
      throw new ExpertMeshError(
        Code.INVALID_ARGUMENT,
        `requests: ${n} requests, at most ${options.maxItems} per batch job`,
        {
          details: { field: "requests", max_items: String(options.maxItems) },
        },
      );
    }
    if (request.maxAttempts > MAX_ATTEMPTS) {
      throw invalidArgument(
        "max_attempts",
        `must be in [1, ${MAX_ATTEMPTS}] (0: the default), got ${request.maxAttempts}`,
      );
    }
    checkLabels(request.labels);
    const items = request.requests.map((item, index) =>
      validateItem(batchId, index, item, this.#deps.generation.model.name),
    );
    const createdMs = Date.now();
    const maxAttempts = request.maxAttempts === 0 ? options.defaultMaxAttempts : request.maxAttempts;
    await store.create(batchId, items, { createdMs, maxAttempts, labels: request.labels });
    try {
      await this.#queue.add("batch", { batchId }, { jobId: batchId });
    } catch (err) {
      const error = new ExpertMeshError(Code.UNAVAILABLE, "the batch queue is unavailable; submit again", {
        cause: err,
      });
      await store.finish(batchId, error);
      throw error;
    }
    return toBatchJobProto(await store.get(batchId));
  }

  async get(batchId: string): Promise<BatchJobInit> {
    return toBatchJobProto(await this.#deps.store.get(checkBatchId(batchId)));
  }

  /** Results of finished items with index in [offset, offset + limit). */
  async results(batchId: string, offset: number, limit: number): Promise<BatchResultsPage> {
    const { store } = this.#deps;
    const job = await store.get(checkBatchId(batchId));
    if (limit > MAX_PAGE)
      throw invalidArgument("limit", `must be in [1, ${MAX_PAGE}] (0: ${DEFAULT_PAGE}), got ${limit}`);
    const size = limit === 0 ? DEFAULT_PAGE : limit;
    const end = Math.min(job.total, offset + size);
    const results = offset >= job.total ? [] : await store.results(batchId, offset, end - offset);
    return { batch: toBatchJobProto(job), results, nextOffset: end < job.total ? end : 0 };
  }

  /** Cancels; returns the job as it is after the request (cancelling, cancelled, or already ended). */
  async cancel(batchId: string): Promise<BatchJobInit> {
    const { store } = this.#deps;
    const status = await store.cancel(checkBatchId(batchId));
    // Cancelled while queued: take it out of the queue. A worker that took it meanwhile finds
    // it cancelled and leaves it (remove answers 0 for such a locked job).
    if (status === "cancelled") await this.#queue.remove(batchId);
    return toBatchJobProto(await store.get(batchId));
  }

  /** The job now and after every change, until it ends or `signal` aborts. */
  async *watch(batchId: string, signal: AbortSignal): AsyncGenerator<BatchJobInit> {
    const { store, events, options } = this.#deps;
    checkBatchId(batchId);
    let last: StoredJob | undefined;
    while (!signal.aborted) {
      // Listen before reading, so a change right after the read still wakes us; `stopped`
      // ends that wait at once when this generator ends.
      const stopped = new AbortController();
      const next = events.next(batchId, options.watchPollMs, AbortSignal.any([signal, stopped.signal]));
      try {
        const job = await store.get(batchId);
        if (last === undefined || changed(last, job)) {
          last = job;
          yield toBatchJobProto(job);
        }
        if (TERMINAL_STATUSES.has(job.status)) return;
        await next;
      } finally {
        stopped.abort();
      }
    }
  }

  async close(): Promise<void> {
    await this.#queue.close();
  }
}

function changed(a: StoredJob, b: StoredJob): boolean {
  return a.status !== b.status || a.completed !== b.completed || a.failed !== b.failed;
}

function checkLabels(labels: Readonly<Record<string, string>>): void {
  const entries = Object.entries(labels);
  if (entries.length > MAX_LABELS)
    throw invalidArgument("labels", `at most ${MAX_LABELS} labels, got ${entries.length}`);
  for (const [key, value] of entries) {
    if (key.length === 0 || key.length > MAX_LABEL_KEY)
      throw invalidArgument("labels", `keys must be 1..${MAX_LABEL_KEY} characters`);
    if (value.length > MAX_LABEL_VALUE)
      throw invalidArgument(`labels.${key}`, `must be at most ${MAX_LABEL_VALUE} characters`);
  }
}

/**
 * Checks an item as the generation will see it (prompt set, model served), so a malformed job
 * is refused whole at submit; fills in its request id.
 */
function validateItem(
  batchId: string,
  index: number,
  item: GenerateRequest,
  servedModel: string,
): GenerateRequest {
  try {
    const request = toBatchGenerationRequest({ batchId, index, request: item }, servedModel, undefined);
    return { ...item, requestId: request.requestId };
  } catch (err) {
    const e = ExpertMeshError.from(err);
    const field =
      e.details.field === undefined ? `requests[${index}]` : `requests[${index}].${e.details.field}`;
    throw new ExpertMeshError(e.code, `requests[${index}]: ${e.message}`, {
      details: { ...e.details, field },
      cause: err,
    });
  }
}
