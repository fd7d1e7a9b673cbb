/** expertmesh.v1.BatchService handlers: decode → BatchJobs → encode. */
import type { BatchService } from "@expertmesh/proto";
import type { ServiceImpl } from "@expertmesh/shared";
import type { BatchJobs } from "./batch-jobs.ts";

export function batchServiceImpl(jobs: BatchJobs): ServiceImpl<typeof BatchService> {
  return {
    async submitBatch(request) {
      return { batch: await jobs.submit(request) };
    },
    async getBatch(request) {
      return { batch: await jobs.get(request.batchId) };
    },
    async getBatchResults(request) {
      const page = await jobs.results(request.batchId, request.offset, request.limit);
      return { batch: page.batch, results: page.results, nextOffset: page.nextOffset };
    },
    async cancelBatch(request) {
      return { batch: await jobs.cancel(request.batchId) };
    },
    async *watchBatch(request, context) {
      for await (const batch of jobs.watch(request.batchId, context.signal)) yield { batch };
    },
  };
}
