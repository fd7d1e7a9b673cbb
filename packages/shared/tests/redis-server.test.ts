import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { pingRedis, startRedisServer } from "@expertmesh/shared/testing";
import type { RedisServer } from "@expertmesh/shared/testing";

function connectError(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: "127.0.0.1" });
    socket.on("connect", () => {
      socket.destroy();
      resolve(undefined);
    });
    socket.on("error", (err: NodeJS.ErrnoException) => resolve(err.code));
  });
}

describe("startRedisServer", () => {
  let server: RedisServer;
  let redis: Redis;

  before(async () => {
    server = await startRedisServer();
    redis = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    await redis.connect();
  });
  after(async () => {
    redis.disconnect();
    await server.stop();
  });

  it("serves SET/GET on the port it reports", async () => {
    assert.equal(server.url, `redis://127.0.0.1:${server.port}`);
    assert.equal(await redis.set("expertmesh:test:key", "value"), "OK");
    assert.equal(await redis.get("expertmesh:test:key"), "value");
  });

  it("runs a pipeline of many INCRBY in one round trip", async () => {
    const before = Number((await redis.info("stats")).match(/total_commands_processed:(\d+)/)?.[1]);
    const pipeline = redis.pipeline();
    for (let expert = 0; expert < 256; expert++)
      pipeline.incrby(`expertmesh:test:load:${expert % 8}`, expert);
    // Count socket writes while the pipeline goes out: one write is one round trip.
    const socket = redis.stream;
    const write = socket.write.bind(socket);
    let writes = 0;
    socket.write = ((...args: Parameters<typeof write>) => {
      writes++;
      return write(...args);
    }) as typeof socket.write;
    const results = await pipeline.exec().finally(() => (socket.write = write));
    assert.equal(writes, 1);
    assert.equal(results?.length, 256);
    assert.ok(results.every(([err]) => err === null));
    // expert % 8 === 3 collects 3 + 11 + … + 251: 32 terms.
    assert.equal(await redis.get("expertmesh:test:load:3"), String((32 * (3 + 251)) / 2));
    const after = Number((await redis.info("stats")).match(/total_commands_processed:(\d+)/)?.[1]);
    assert.ok(after - before >= 256, `server processed ${after - before} commands`);
  });

  it("stop() shuts the server down and frees its port", async () => {
    const other = await startRedisServer();
    assert.equal(await pingRedis(other.port), true);
    await other.stop();
    assert.equal(await connectError(other.port), "ECONNREFUSED");
    assert.equal(await pingRedis(other.port), false);
  });
});
