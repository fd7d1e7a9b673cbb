import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { startRedisServer } from "@expertmesh/shared/testing";
import type { RedisServer } from "@expertmesh/shared/testing";
import { Redis } from "ioredis";
import { LoadReader, LoadRecorder, PlacementKeys, planDispatch } from "../src/index.ts";
import type { DispatchPlan, Placement } from "../src/index.ts";
import { V3_SHAPE, placementWithReplicas, randomRouting, seededRandom } from "./fixtures.ts";

const TOPK = 8;
const HOT = [5, 40, 130];

/** One routed micro-batch per MoE layer, planned on `p`. */
function planAllLayers(p: Placement, seed: number, rows: number): DispatchPlan[] {
  const rand = seededRandom(seed);
  return Array.from({ length: p.numLayers }, (_, l) => {
    const { topkIds, topkWeights } = randomRouting(V3_SHAPE, rows, TOPK, rand, HOT);
    return planDispatch(p, { moeLayer: l, topk: TOPK, topkIds, topkWeights });
  });
}

/** What each worker's recorder sees: the physical slots of its own dispatches. */
function recordWorker(rec: LoadRecorder, plans: readonly DispatchPlan[], worker: number): void {
  for (const plan of plans) rec.recordSlots(plan.moeLayer, plan.workers[worker]!.physical);
}

/**
 * Expected rows per physical [layers][P] and logical [layers][E], from the slots the plans chose
 * (`plan.physical`), counting only slots on workers `workers` accepts.
 */
function expected(
  p: Placement,
  batches: readonly { plans: readonly DispatchPlan[]; workers: (w: number) => boolean }[],
): { physical: Float64Array[]; logical: Float64Array[]; rows: number } {
  const P = p.numPhysical;
  const physical = Array.from({ length: p.numLayers }, () => new Float64Array(P));
  const logical = Array.from({ length: p.numLayers }, () => new Float64Array(p.shape.nRoutedExperts));
  let rows = 0;
  for (const { plans, workers } of batches) {
    for (const plan of plans) {
      const l = plan.moeLayer;
      for (const ph of plan.physical) {
        if (!workers(p.physicalToWorker[l * P + ph]!)) continue;
        physical[l]![ph]!++;
        logical[l]![p.physicalToLogical[l * P + ph]!]!++;
        rows++;
      }
    }
  }
  return { physical, logical, rows };
}

async function commandCalls(redis: Redis): Promise<Record<string, number>> {
  const info = await redis.info("commandstats");
  const calls: Record<string, number> = {};
  for (const m of info.matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)) calls[m[1]!] = Number(m[2]);
  return calls;
}

describe("LoadRecorder / LoadReader", () => {
  let server: RedisServer;
  let redis: Redis;
  before(async () => {
    server = await startRedisServer();
    redis = new Redis(server.url, { lazyConnect: true });
    await redis.connect();
  });
  after(async () => {
    await redis.quit();
    await server.stop();
  });

  it("flushes a worker's counters in one transaction and sums every worker's flushes", async () => {
    const keys = new PlacementKeys({ cluster: "load" });
    const p = placementWithReplicas(HOT, 1);
    const recorders = p.workers.map(() => new LoadRecorder(redis, { placement: p, keys, ttlSeconds: 600 }));
    const batch1 = planAllLayers(p, 11, 96);
    const batch2 = planAllLayers(p, 12, 32);
    for (const [w, rec] of recorders.entries()) recordWorker(rec, batch1, w);
    recordWorker(recorders[0]!, batch2, 0); // w0 saw a second micro-batch
    recordWorker(recorders[1]!, batch2, 1);

    const pending = recorders[0]!.pendingRows();
    assert.ok(pending > 0);
    const before = await commandCalls(redis);
    const flushed = await recorders[0]!.flush(42);
    const afterCalls = await commandCalls(redis);
    assert.equal(flushed.rows, pending);
    assert.equal(flushed.key, "expertmesh:{load}:load:42");
    assert.equal(recorders[0]!.pendingRows(), 0);
    // One MULTI … EXEC: an HINCRBY per non-zero counter and one EXPIRE.
    assert.equal((afterCalls.hincrby ?? 0) - (before.hincrby ?? 0), flushed.fields);
    assert.equal((afterCalls.expire ?? 0) - (before.expire ?? 0), 1);
    assert.equal((afterCalls.exec ?? 0) - (before.exec ?? 0), 1);
    assert.equal(await redis.hlen(flushed.key), flushed.fields);
    const ttl = await redis.ttl(flushed.key);
    assert.ok(ttl > 0 && ttl <= 600, `ttl ${ttl}`);

    for (const rec of recorders.slice(1)) await rec.flush(42);
    const nothing = await recorders[2]!.flush(42);
    assert.deepEqual(nothing, { key: flushed.key, fields: 0, rows: 0 });

    const load = await new LoadReader(redis, { keys }).read(42, p);
    const want = expected(p, [
      { plans: batch1, workers: () => true },
      { plans: batch2, workers: (w) => w <= 1 },
    ]);
    assert.deepEqual(load.physical, want.physical);
    assert.deepEqual(load.logical, want.logical);
    assert.equal(load.totalRows, want.rows);
    assert.ok(want.rows > 96 * TOPK * p.numLayers);
    assert.equal(load.otherVersionRows, 0);
    // Replicas of the hot experts both carried load.
    for (const e of HOT)
      for (const ph of p.replicasOf(0, e)) assert.ok(load.physical[0]![ph]! > 0, `replica ${ph} of ${e}`);
  });

  it("keeps rows of a window that straddles a placement change apart by version", async () => {
    const keys = new PlacementKeys({ cluster: "straddle" });
    const v1 = placementWithReplicas(HOT, 1);
    const v2 = placementWithReplicas([7], 2);
    const rec = new LoadRecorder(redis, { placement: v1, keys });
    rec.record(0, 5, 3); // layer 3, physical 5 (= logical 5) under v1
    rec.record(0, 256, 2); // the replica of logical 5 under v1
    rec.setPlacement(v2);
    rec.record(0, 256, 4); // physical 256 is now a replica of logical 7
    rec.record(2, 9);
    const flushed = await rec.flush("2024-w1");
    assert.deepEqual(flushed, { key: "expertmesh:{straddle}:load:2024-w1", fields: 4, rows: 10 });
    assert.deepEqual(Object.fromEntries(Object.entries(await redis.hgetall(flushed.key)).sort()), {
      "1:3:5:256": "2",
      "1:3:5:5": "3",
      "2:3:7:256": "4",
      "2:5:9:9": "1",
    });
    const load = await new LoadReader(redis, { keys }).read(["2024-w1", "2024-w0"], v2);
    assert.equal(load.totalRows, 10);
    assert.equal(load.otherVersionRows, 5);
    assert.equal(load.physical[0]![256], 4);
    assert.equal(load.physical[0]![5], 0);
    assert.equal(load.logical[0]![5], 5);
    assert.equal(load.logical[0]![7], 4);
    assert.equal(load.logical[2]![9], 1);
  });

  it("keeps the counts when Redis is unreachable, for the next flush", async () => {
    const keys = new PlacementKeys({ cluster: "offline" });
    const p = placementWithReplicas(HOT, 1);
    const client = new Redis(server.url, { lazyConnect: true });
    await client.connect();
    const rec = new LoadRecorder(client, { placement: p, keys });
    rec.record(1, 17, 5);
    client.disconnect(); // closed for good: commands fail instead of queueing
    await assert.rejects(
      rec.flush(1),
      (err: unknown) => err instanceof ExpertMeshError && err.code === Code.UNAVAILABLE,
    );
    assert.equal(rec.pendingRows(), 5);
    await client.connect();
    assert.equal((await rec.flush(1)).rows, 5);
    assert.equal(await redis.hget(keys.load(1), "1:4:17:17"), "5");
    await client.quit();
  });

  it("refuses a window written for another model shape", async () => {
    const keys = new PlacementKeys({ cluster: "mismatch" });
    await redis.hset(keys.load(7), "1:60:3:3", "2");
    await assert.rejects(
      new LoadReader(redis, { keys }).read(7, placementWithReplicas(HOT, 1)),
      (err: unknown) =>
        err instanceof ExpertMeshError &&
        err.code === Code.FAILED_PRECONDITION &&
        /layer 60/.test(err.message),
    );
  });
});
