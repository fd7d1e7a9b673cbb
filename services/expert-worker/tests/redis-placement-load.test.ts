/**
 * An expert-worker with Redis: it serves the placement current in the PlacementStore, and the
 * load it flushes (per window, and on drain) adds up to exactly the slots it served. Startup
 * without any placement source fails with a clear message.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { RemoteRoutedExperts } from "@expertmesh/dispatch";
import { PlacementKeys, PlacementStore, parseLoadField, planDispatch } from "@expertmesh/placement";
import { ExpertService, WireDtype } from "@expertmesh/proto";
import { Code, ExpertMeshError, createGrpcChannel, createGrpcClient } from "@expertmesh/shared";
import { liveGroupMembers, spawnService, startRedisServer } from "@expertmesh/shared/testing";
import type { RedisServer } from "@expertmesh/shared/testing";
import { Redis } from "ioredis";
import {
  REPO_ROOT,
  TINY_V3,
  TINY_V3_HIDDEN,
  randomBatch,
  seededRandom,
  startWorker,
  tinyPlacement,
  workersOn,
} from "./cluster-fixture.ts";

describe("expert-worker with Redis", () => {
  let server: RedisServer;
  let redis: Redis;

  before(async () => {
    server = await startRedisServer();
    redis = new Redis(server.url);
  });
  after(async () => {
    await redis?.quit();
    await server?.stop();
  });

  it("fails to start, saying why: bad configuration, no placement published, no placement source", async () => {
    const cases = [
      [
        { EXPERTMESH_PORT: "http", EXPERTMESH_LOAD_WINDOOW: "1s" },
        2,
        /did you mean EXPERTMESH_LOAD_WINDOW\?\)\n.*EXPERTMESH_PORT="http": expected int/,
      ],
      [{ EXPERTMESH_REDIS_URL: server.url }, 1, /no placement published in Redis/],
      [{}, 1, /no placement source: set EXPERTMESH_PLACEMENT_FILE .* or EXPERTMESH_REDIS_URL/],
    ] as const;
    await Promise.all(
      cases.map(async ([env, code, message]) => {
        const proc = spawnService("node", ["--import", "tsx", "services/expert-worker/src/main.ts"], {
          cwd: REPO_ROOT,
          env: {
            EXPERTMESH_MODEL_DIR: TINY_V3,
            EXPERTMESH_WORKER_ID: "w0",
            EXPERTMESH_PORT: "0",
            EXPERTMESH_METRICS_PORT: "0",
            ...env,
          },
        });
        const exit = await proc.exited;
        assert.equal(exit.code, code, proc.output());
        assert.match(proc.output(), message);
        assert.deepEqual(liveGroupMembers(proc.pid), []);
      }),
    );
  });

  it("serves the current placement from the store; drains on SIGTERM; flushed load adds up to rows × slots served", async () => {
    // Version 3 is current; the worker must pick it (not v1/v2) and its requests must carry it.
    const store = new PlacementStore(redis);
    const keys = new PlacementKeys();
    for (const version of [1, 3]) await store.publish(tinyPlacement(workersOn(2, 1), version));
    const placement = (await store.current())!;
    assert.equal(placement.version, 3);

    const worker = await startWorker("w0", {
      EXPERTMESH_REDIS_URL: server.url,
      EXPERTMESH_LOAD_WINDOW: "200ms",
    });
    const remote = new RemoteRoutedExperts({
      placement,
      addresses: { w0: worker.address, w1: "127.0.0.1:1" },
      hiddenSize: TINY_V3_HIDDEN,
      combineDtype: WireDtype.FLOAT32,
    });
    try {
      const channel = createGrpcChannel(worker.address);
      const info = await createGrpcClient(ExpertService, channel).getWorkerInfo({}, { timeoutMs: 5_000 });
      channel.close();
      assert.equal(info.placementVersion, 3);

      // Tokens routed within w0's experts (both workers share one node: w0 holds experts 0..127).
      const random = seededRandom(9);
      const served = new Map<string, number>(); // "layer:physical" → slots
      let slots = 0;
      /** One call; its slots count as served once it has its answer. */
      const call = async (i: number): Promise<void> => {
        const layer = 1 + (i % 3);
        const { rows, experts, weights } = randomBatch(12, random, {
          nRoutedExperts: 128,
          nGroup: 4,
          topkGroup: 4,
        });
        const plan = planDispatch(placement, {
          moeLayer: layer - 1,
          topk: 8,
          topkIds: experts,
          topkWeights: weights,
        });
        await remote.run(layer, rows, experts, weights);
        for (const p of plan.physical) {
          const key = `${layer}:${p}`;
          served.set(key, (served.get(key) ?? 0) + 1);
          slots++;
        }
      };
      for (let i = 0; i < 6; i++) await call(i);
      assert.equal(slots, 6 * 12 * 8);

      // SIGTERM with 20 calls in flight (all sent before the first answer came back): the worker
      // answers them, ends the stream, flushes the load the windows have not flushed yet, and
      // exits 0. A call it did not take would fail UNAVAILABLE (retryable) — none may hang.
      const calls = Array.from({ length: 20 }, (_, i) => call(6 + i));
      const settled = Promise.allSettled(calls);
      await Promise.race(calls); // the worker is busy with them now
      const exit = await worker.process.stop({ timeoutMs: 15_000 });
      assert.equal(exit.code, 0, worker.process.output());
      const outcomes = await settled;
      for (const o of outcomes) {
        if (o.status === "rejected") {
          assert.ok(
            o.reason instanceof ExpertMeshError && o.reason.code === Code.UNAVAILABLE,
            String(o.reason),
          );
        }
      }
      const answered = outcomes.filter((o) => o.status === "fulfilled").length;
      assert.equal(answered, 20, "requests in flight at SIGTERM are finished, not dropped");
      assert.equal(slots, (6 + answered) * 12 * 8);

      const flushed = new Map<string, number>();
      let total = 0;
      const windows = await redis.keys(`${keys.prefix}:{${keys.cluster}}:load:*`);
      assert.ok(windows.length >= 1);
      for (const key of windows) {
        for (const [field, value] of Object.entries(await redis.hgetall(key))) {
          const f = parseLoadField(field);
          assert.ok(f !== undefined, `load field ${field}`);
          assert.equal(f.placementVersion, 3);
          assert.equal(f.logical, f.physical, "default placement: physical id = logical id");
          const k = `${f.modelLayer}:${f.physical}`;
          flushed.set(k, (flushed.get(k) ?? 0) + Number(value));
          total += Number(value);
        }
      }
      assert.equal(total, slots);
      assert.deepEqual(new Map([...flushed].sort()), new Map([...served].sort()));
    } finally {
      await remote.close();
      await worker.process.stop();
      assert.deepEqual(liveGroupMembers(worker.process.pid), []);
    }
  });
});
