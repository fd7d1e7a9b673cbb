/**
 * A Lua script run by SHA (EVALSHA), loaded with EVAL the first time a server lacks it. Scripts
 * open with a contract block: KEYS, ARGV and return values.
 */
import { createHash } from "node:crypto";
import type { Redis } from "ioredis";

export class RedisScript {
  readonly source: string;
  readonly sha: string;

  constructor(source: string) {
    this.source = source;
    this.sha = createHash("sha1").update(source).digest("hex");
  }

  async run(redis: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
      return redis.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}
