/**
 * Runs one batch job in this router: takes it (START_JOB), issues its unfinished items through
 * the router's BatchSlots, records each result as it comes, and ends the job. A cancel (from any
 * router) aborts the items in flight and issues no more; a stop (this router shutting down)
 * does the same but leaves the job running for another worker to resume, skipping the items
 * that already have a result. Independent of BullMQ: BatchWorker calls it per queue job.
 */
import { Code, ExpertMeshError } from "@expertmesh/shared";
import type { Logger } from "@expertmesh/shared";
import type { GenerationService } from "../core/generation.ts";
import type { BatchEvents } from "./batch-events.ts";
import { runBatchItem } from "./batch-item.ts";
import type { CompiledBatchOptions } from "./batch-options.ts";
import type { StoredStatus } from "./batch-scripts.ts";
import type { BatchSlots } from "./batch-slots.ts";
import type { BatchStore } from "./batch-store.ts";

export interface BatchRunnerDeps {
  readonly store: BatchStore;
  readonly events: BatchEvents;
  readonly generation: GenerationService;
  readonly slots: BatchSlots;
  readonly options: CompiledBatchOptions;
  readonly logger?: Logger;
}

/** How a run ended: the job's stored status, or "interrupted" (stopped; the job stays running). */
export type BatchRunOutcome = StoredStatus | "interrupted";

/** Items read from Redis at a time. */
const PAGE = 256;

export async function runBatchJob(
  deps: BatchRunnerDeps,
  batchId: string,
  stop: AbortSignal,
): Promise<BatchRunOutcome> {
  const { store, events, options } = deps;
  const status = await store.start(batchId);
  if (status !== "running") return status;
  const job = await store.get(batchId);
  const finished = await store.finishedIndices(batchId);

  // Aborted by a cancel, by `stop`, or by a failure to record a result.
  const halt = new AbortController();
  let cancelled = false;
  let failure: ExpertMeshError | undefined;
  const checkCancelled = (): void => {
    store.get(batchId).then(
      (current) => {
        if (current.status === "cancelling" || current.status === "cancelled") {
          cancelled = true;
          halt.abort(new ExpertMeshError(Code.CANCELLED, `batch job ${batchId} was cancelled`));
        }
      },
      (err: unknown) => deps.logger?.warn({ err, batchId }, "batch job: status check failed"),
    );
  };
  const offEvents = events.on(batchId, (event) => {
    if (event === "cancel") checkCancelled();
  });
  const poll = setInterval(checkCancelled, options.cancelPollMs);
  const onStop = (): void => halt.abort(stop.reason);
  stop.addEventListener("abort", onStop, { once: true });
  if (stop.aborted) onStop();
  // A cancel that landed between START_JOB and the subscription above.
  checkCancelled();

  const inFlight = new Set<Promise<void>>();
  const fail = (err: unknown): void => {
    failure ??= ExpertMeshError.from(err);
    halt.abort(failure);
  };
  try {
    pages: for (let start = 0; start < job.total; start += PAGE) {
      if (halt.signal.aborted) break;
      const items = await store.items(batchId, start, Math.min(PAGE, job.total - start));
      for (const [offset, request] of items.entries()) {
        const index = start + offset;
        if (finished.has(index)) continue;
        try {
          await deps.slots.acquire(halt.signal);
        } catch {
          break pages;
        }
        const item = { batchId, index, request, maxAttempts: job.maxAttempts };
        const run = runBatchItem(item, deps.generation, options, halt.signal)
          .then(async (outcome) => {
            if (outcome.kind !== "aborted") await store.record(batchId, outcome.result, outcome.kind);
          })
          .catch(fail)
          .finally(() => {
            deps.slots.release();
            inFlight.delete(run);
          });
        inFlight.add(run);
      }
    }
  } catch (err) {
    fail(err);
  } finally {
    // Every item was issued, or the job halted: either way wait for those still running, so
    // no generation outlives its job's run and every slot is given back.
    while (inFlight.size > 0) await Promise.all([...inFlight]);
    clearInterval(poll);
    offEvents();
    stop.removeEventListener("abort", onStop);
  }
  if (failure !== undefined) throw failure;
  if (stop.aborted && !cancelled) return "interrupted";
  return store.finish(batchId);
}
