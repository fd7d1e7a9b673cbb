/**
 * Batch jobs: many prompts submitted as one job, stored in Redis, queued on BullMQ, run by the
 * routers' workers at priority "batch" under a per-router cap (see batch-options.ts for the rule
 * that keeps interactive traffic from being starved), with per-prompt retries, progress,
 * results and cancellation.
 *
 * Wiring in the router (start-router.ts), when Redis is configured:
 *   const batch = await startBatchJobs({ redisUrl, cluster, generation: engine,
 *                                        options: batchOptionsFromConfig(config), logger });
 *   server.addService(BatchService, batch.service);            // before bind
 *   HTTP: isBatchHttpPath(path) → batch.handleHttp({ method, path, query, body })
 *   drain: await batch.stopWorker() before engine.close()      // running jobs go back to the queue
 *   stop:  await batch.close()
 */
import { Redis } from "ioredis";
import type { BatchService } from "@expertmesh/proto";
import type { Logger, ServiceImpl } from "@expertmesh/shared";
import type { GenerationService } from "../core/generation.ts";
import { BatchEvents } from "./batch-events.ts";
import { handleBatchHttp } from "./batch-http.ts";
import type { BatchHttpRequest, BatchHttpResponse } from "./batch-http.ts";
import { BatchJobs } from "./batch-jobs.ts";
import { BatchKeys } from "./batch-keys.ts";
import { compileBatchOptions } from "./batch-options.ts";
import type { BatchOptions, CompiledBatchOptions } from "./batch-options.ts";
import { batchServiceImpl } from "./batch-service.ts";
import { BatchSlots } from "./batch-slots.ts";
import { BatchStore } from "./batch-store.ts";
import { BatchWorker } from "./batch-worker.ts";

export { BatchEvents } from "./batch-events.ts";
export { handleBatchHttp, isBatchHttpPath } from "./batch-http.ts";
export type { BatchHttpRequest, BatchHttpResponse } from "./batch-http.ts";
export { BatchJobs } from "./batch-jobs.ts";
export type { BatchResultsPage } from "./batch-jobs.ts";
export { BATCH_FIELDS, BatchKeys, checkBatchId } from "./batch-keys.ts";
export type { BatchKeyOptions } from "./batch-keys.ts";
export { MAX_ATTEMPTS, batchConfig, batchOptionsFromConfig, compileBatchOptions } from "./batch-options.ts";
export type { BatchConfig, BatchOptions, CompiledBatchOptions } from "./batch-options.ts";
export { batchServiceImpl } from "./batch-service.ts";
export { BatchSlots } from "./batch-slots.ts";
export { BatchStore, toBatchJobProto } from "./batch-store.ts";
export type { StoredJob } from "./batch-store.ts";
export { BatchWorker } from "./batch-worker.ts";
export { runBatchJob } from "./batch-runner.ts";
export type { BatchRunOutcome } from "./batch-runner.ts";
export { itemBackoffMs, runBatchItem } from "./batch-item.ts";

export interface StartBatchJobsOptions {
  /** The Redis holding the jobs and the BullMQ queue. */
  readonly redisUrl: string;
  /** Cluster name in the keys (one model deployment). */
  readonly cluster?: string;
  /** Key prefix ("expertmesh"). */
  readonly prefix?: string;
  readonly generation: GenerationService;
  readonly options?: BatchOptions;
  readonly logger?: Logger;
}

export interface BatchModule {
  readonly jobs: BatchJobs;
  readonly options: CompiledBatchOptions;
  /** This router's cap on batch generations in flight (for metrics and tests). */
  readonly slots: BatchSlots;
  /** The gRPC BatchService implementation. */
  readonly service: ServiceImpl<typeof BatchService>;
  /** The HTTP routes (see batch-http.ts); only call it for paths isBatchHttpPath accepts. */
  handleHttp(request: BatchHttpRequest): Promise<BatchHttpResponse>;
  /** Stops taking jobs; jobs in progress abort their generations and go back to the queue. */
  stopWorker(): Promise<void>;
  /** stopWorker, then closes the queue and the Redis connections. */
  close(): Promise<void>;
}

/** Connects to Redis, and starts the worker unless options.maxConcurrentJobs is 0. */
export async function startBatchJobs(init: StartBatchJobsOptions): Promise<BatchModule> {
  const options = compileBatchOptions(init.options);
  const keys = new BatchKeys({ prefix: init.prefix, cluster: init.cluster });
  const redis = new Redis(init.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 3 });
  await redis.connect();
  const opened: { close(): Promise<unknown> }[] = [{ close: () => redis.quit() }];
  try {
    const store = new BatchStore(redis, keys, { retentionMs: options.retentionMs });
    const events = await BatchEvents.open(redis, keys);
    opened.push(events);
    const jobs = new BatchJobs({
      store,
      events,
      generation: init.generation,
      options,
      redisUrl: init.redisUrl,
    });
    opened.push(jobs);
    const slots = new BatchSlots(options.maxInFlight);
    let worker: BatchWorker | undefined;
    if (options.maxConcurrentJobs > 0) {
      worker = new BatchWorker({
        store,
        events,
        generation: init.generation,
        slots,
        options,
        keys,
        redisUrl: init.redisUrl,
        ...(init.logger === undefined ? {} : { logger: init.logger }),
      });
      await worker.waitUntilReady();
    }
    let closed: Promise<void> | undefined;
    const stopWorker = async (): Promise<void> => {
      await worker?.close();
    };
    return {
      jobs,
      options,
      slots,
      service: batchServiceImpl(jobs),
      handleHttp: (request) => handleBatchHttp(jobs, request),
      stopWorker,
      close() {
        closed ??= (async () => {
          await stopWorker();
          for (const resource of opened.reverse()) await resource.close();
        })();
        return closed;
      },
    };
  } catch (err) {
    for (const resource of opened.reverse()) await resource.close().catch(() => undefined);
    throw err;
  }
}
