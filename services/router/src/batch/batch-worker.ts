/**
 * The router's BullMQ worker of the batch queue: one queue job per batch job (id = batch id),
 * run by runBatchJob, at most `maxConcurrentJobs` at once, all sharing the router's BatchSlots.
 * On shutdown the jobs in progress are stopped and put back in the queue (not failed, no attempt
 * used), so another router resumes them where they were.
 */
import { WaitingError, Worker } from "bullmq";
import type { Job } from "bullmq";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import type { BatchKeys } from "./batch-keys.ts";
import { runBatchJob } from "./batch-runner.ts";
import type { BatchRunOutcome, BatchRunnerDeps } from "./batch-runner.ts";

/** What the queue job carries: only the id; the items are in the batch store. */
export interface BatchQueueData {
  readonly batchId: string;
}

export interface BatchWorkerOptions extends BatchRunnerDeps {
  readonly keys: BatchKeys;
  /** Redis for BullMQ's own connections (it needs a blocking one). */
  readonly redisUrl: string;
}

export class BatchWorker {
  readonly #worker: Worker<BatchQueueData, { status: BatchRunOutcome }>;
  readonly #stop = new AbortController();
  readonly #deps: BatchWorkerOptions;
  #closed: Promise<void> | undefined;

  constructor(options: BatchWorkerOptions) {
    this.#deps = options;
    this.#worker = new Worker<BatchQueueData, { status: BatchRunOutcome }>(
      options.keys.queueName,
      (job, token) => this.#process(job, token),
      {
        connection: { url: options.redisUrl, maxRetriesPerRequest: null },
        prefix: options.keys.bullPrefix,
        concurrency: Math.max(1, options.options.maxConcurrentJobs),
        autorun: true,
      },
    );
    this.#worker.on("error", (err) => options.logger?.warn({ err }, "batch worker: redis error"));
    this.#worker.on("failed", (job, err) =>
      options.logger?.warn(
        { err, batchId: job?.data.batchId, attempt: job?.attemptsMade },
        "batch worker: job attempt failed",
      ),
    );
  }

  /** Resolves once the worker is connected and taking jobs. */
  waitUntilReady(): Promise<void> {
    return this.#worker.waitUntilReady().then(() => undefined);
  }

  /**
   * Stops: jobs in progress abort their generations and go back to the queue for another
   * router; resolves once they have.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#stop.abort(new ExpertMeshError(Code.UNAVAILABLE, "router shutting down"));
      await this.#worker.close();
    })();
    return this.#closed;
  }

  async #process(job: Job<BatchQueueData>, token: string | undefined): Promise<{ status: BatchRunOutcome }> {
    const { batchId } = job.data;
    let outcome: BatchRunOutcome;
    try {
      outcome = await runBatchJob(this.#deps, batchId, this.#stop.signal);
    } catch (err) {
      // The job's machinery failed (Redis, most likely). BullMQ retries it with backoff; after
      // its last attempt the job is marked failed so that clients see why.
      if (job.attemptsMade + 1 >= (job.opts.attempts ?? 1)) {
        const error = new ExpertMeshError(
          Code.UNAVAILABLE,
          "the batch job could not be run; submit it again",
          { cause: err },
        );
        await this.#deps.store
          .finish(batchId, error)
          .catch((finishErr: unknown) =>
            this.#deps.logger?.error(
              { err: finishErr, batchId },
              "batch worker: could not mark the job failed",
            ),
          );
      }
      throw err;
    }
    if (outcome === "interrupted") {
      await job.moveToWait(token);
      throw new WaitingError();
    }
    return { status: outcome };
  }
}
