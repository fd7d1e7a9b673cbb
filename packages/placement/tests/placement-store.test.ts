import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { startRedisServer } from "@expertmesh/shared/testing";
import type { RedisServer } from "@expertmesh/shared/testing";
import { Redis } from "ioredis";
import { PlacementKeys, PlacementStore, createDefaultPlacement, placementToJSON } from "../src/index.ts";
import type { Placement } from "../src/index.ts";
import { V3_SHAPE, workersOn } from "./fixtures.ts";

const placementV = (version: number, perNode = [2, 2]): Placement =>
  createDefaultPlacement({ ...V3_SHAPE, workers: workersOn(perNode), version });

describe("PlacementStore", () => {
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

  it("publishes v1 then v2, refuses v1 again, and current() is v2", async () => {
    const store = new PlacementStore(redis, { keys: new PlacementKeys({ cluster: "publish" }) });
    assert.equal(await store.current(), undefined);
    assert.equal(await store.currentVersion(), 0);
    await store.publish(placementV(1));
    await store.publish(placementV(2, [1, 1, 1, 1]));
    for (const stale of [1, 2]) {
      await assert.rejects(store.publish(placementV(stale)), (err: unknown) => {
        assert.ok(err instanceof ExpertMeshError);
        assert.equal(err.code, Code.FAILED_PRECONDITION);
        assert.equal(err.message, `placement v${stale} refused: not newer than the current version v2`);
        return true;
      });
    }
    const current = await store.current();
    assert.ok(current !== undefined);
    assert.equal(current.version, 2);
    assert.deepEqual(placementToJSON(current), placementToJSON(placementV(2, [1, 1, 1, 1])));
    assert.equal((await store.get(1))?.nodes.length, 2);
    assert.equal(await store.get(3), undefined);
    assert.deepEqual(await store.versions(), [1, 2]);
    assert.equal(await redis.get("expertmesh:{publish}:placement:current"), "2");
  });

  it("delivers a newly published version to a subscriber, in order, once", async () => {
    const store = new PlacementStore(redis, { keys: new PlacementKeys({ cluster: "subscribe" }) });
    await store.publish(placementV(1));
    const seen: number[] = [];
    const errors: unknown[] = [];
    let gotV3!: () => void;
    const v3 = new Promise<void>((resolve) => (gotV3 = resolve));
    const sub = await store.subscribe(
      (p) => {
        seen.push(p.version);
        if (p.version === 3) gotV3();
      },
      { afterVersion: 1, onError: (err) => errors.push(err) },
    );
    await store.publish(placementV(2));
    await store.publish(placementV(3));
    await v3;
    await sub.close();
    assert.deepEqual(seen, [2, 3]);
    assert.deepEqual(errors, []);
  });

  it("hands a late subscriber the current version", async () => {
    const store = new PlacementStore(redis, { keys: new PlacementKeys({ cluster: "late" }) });
    await store.publish(placementV(4));
    const got: number[] = [];
    const errors: unknown[] = [];
    const sub = await store.subscribe((p) => got.push(p.version), { onError: (err) => errors.push(err) });
    await sub.close(); // waits for the delivery of the current version
    assert.deepEqual(got, [4]);
    assert.deepEqual(errors, []);
  });

  it("refuses a stored placement that fails validation when read back", async () => {
    const keys = new PlacementKeys({ cluster: "corrupt" });
    const store = new PlacementStore(redis, { keys });
    const doc = placementToJSON(
      createDefaultPlacement({ ...V3_SHAPE, workers: workersOn([1, 1, 1, 1, 1, 1, 1, 1]) }),
    );
    doc.layers[0]!.physicalToWorker[0] = 3;
    await redis.set(keys.version(1), JSON.stringify(doc));
    await redis.set(keys.current, "1");
    await assert.rejects(store.current(), (err: unknown) => {
      assert.ok(err instanceof ExpertMeshError);
      assert.equal(err.code, Code.FAILED_PRECONDITION);
      assert.match(err.message, /^placement v1 layer 3: .* reach 5 nodes .*group 0 on n0, n3\./);
      return true;
    });
  });

  it("prunes old versions but never the current one", async () => {
    const keys = new PlacementKeys({ cluster: "prune" });
    const store = new PlacementStore(redis, { keys });
    for (const v of [1, 2, 5]) await store.publish(placementV(v));
    assert.deepEqual(await store.prune(2), [1]);
    assert.deepEqual(await store.versions(), [2, 5]);
    assert.equal(await redis.exists(keys.version(1)), 0);
    assert.deepEqual(await store.prune(1), [2]);
    assert.equal((await store.current())?.version, 5);
  });
});
