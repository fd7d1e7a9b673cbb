/**
 * Placement versions in Redis: publish (store N and make it current, atomically, refusing a
 * version not newer than current), read current or a given version, and subscribe to new
 * versions over pub/sub. Every placement read back is validated (placementFromJSON).
 */
import { Code, ExpertMeshError } from "@expertmesh/shared";
import type { Redis } from "ioredis";
import type { Placement } from "../core/placement.ts";
import { placementFromJSON, placementToJSON } from "../core/placement-json.ts";
import { validatePlacement } from "../core/validate-placement.ts";
import { PlacementKeys } from "./keys.ts";
import { RedisScript } from "./redis-script.ts";

const PUBLISH = new RedisScript(`
--[[
  Stores a placement version and makes it current, atomically.
  KEYS[1] placement:current    string: current version
  KEYS[2] placement:v:<N>      string: placement N as JSON
  KEYS[3] placement:versions   zset of stored versions
  ARGV[1] N (decimal integer)
  ARGV[2] placement JSON
  ARGV[3] updates channel (receives N)
  Returns { 1, N }         stored, N is current, N published on the channel
          { -1, current }  refused: N is not newer than the current version
]]
local current = tonumber(redis.call("GET", KEYS[1]) or "0")
local version = tonumber(ARGV[1])
if version <= current then
  return { -1, current }
end
redis.call("SET", KEYS[2], ARGV[2])
redis.call("ZADD", KEYS[3], version, ARGV[1])
redis.call("SET", KEYS[1], ARGV[1])
redis.call("PUBLISH", ARGV[3], ARGV[1])
return { 1, version }
`);

export interface PlacementStoreOptions {
  readonly keys?: PlacementKeys;
}

export interface PlacementSubscribeOptions {
  /** Deliver only versions newer than this (e.g. the one already applied); 0 by default. */
  readonly afterVersion?: number;
  /** Failures to read or validate a new version, and listener exceptions. */
  readonly onError: (err: unknown) => void;
}

export interface PlacementSubscription {
  /** Unsubscribes, closes the subscriber connection and waits for any delivery in progress. */
  close(): Promise<void>;
}

export class PlacementStore {
  readonly keys: PlacementKeys;
  readonly #redis: Redis;

  constructor(redis: Redis, options: PlacementStoreOptions = {}) {
    this.#redis = redis;
    this.keys = options.keys ?? new PlacementKeys();
  }

  /** Stores `placement` and makes it current; FAILED_PRECONDITION when its version is not newer than current. */
  async publish(placement: Placement): Promise<void> {
    validatePlacement(placement);
    const v = placement.version;
    const reply = await PUBLISH.run(
      this.#redis,
      [this.keys.current, this.keys.version(v), this.keys.versions],
      [v, JSON.stringify(placementToJSON(placement)), this.keys.updates],
    );
    const [status, current] = reply as [number, number];
    if (status === -1) {
      throw new ExpertMeshError(
        Code.FAILED_PRECONDITION,
        `placement v${v} refused: not newer than the current version v${current}`,
        { details: { version: String(v), current: String(current) } },
      );
    }
  }

  /** The current version number; 0 when none was published. */
  async currentVersion(): Promise<number> {
    const v = await this.#redis.get(this.keys.current);
    return v === null ? 0 : Number(v);
  }

  /** The current placement; undefined when none was published. */
  async current(): Promise<Placement | undefined> {
    // current → v:N is two reads; a prune between them can only remove N if newer versions
    // were published meanwhile, so re-read the pointer and try again.
    for (let attempt = 0; attempt < 3; attempt++) {
      const v = await this.currentVersion();
      if (v === 0) return undefined;
      const p = await this.get(v);
      if (p !== undefined) return p;
    }
    throw new ExpertMeshError(Code.UNAVAILABLE, "current placement kept changing while being read");
  }

  /** A stored version; undefined when it does not exist (never published, or pruned). */
  async get(version: number): Promise<Placement | undefined> {
    const json = await this.#redis.get(this.keys.version(version));
    if (json === null) return undefined;
    const p = placementFromJSON(json);
    if (p.version !== version) {
      throw new ExpertMeshError(
        Code.DATA_LOSS,
        `${this.keys.version(version)} holds placement v${p.version}`,
      );
    }
    return p;
  }

  /** Stored version numbers, ascending. */
  async versions(): Promise<number[]> {
    return (await this.#redis.zrange(this.keys.versions, 0, -1)).map(Number);
  }

  /** Deletes all but the newest `keep` (≥ 1) stored versions; returns the versions deleted. */
  async prune(keep: number): Promise<number[]> {
    if (!Number.isInteger(keep) || keep < 1) {
      throw new ExpertMeshError(Code.INVALID_ARGUMENT, `keep: must be a positive integer, got ${keep}`);
    }
    // The current version is the newest (publish only moves forward), so it is never deleted.
    const old = await this.#redis.zrange(this.keys.versions, 0, -(keep + 1));
    if (old.length === 0) return [];
    const tx = this.#redis.multi();
    tx.del(...old.map((v) => this.keys.version(Number(v))));
    tx.zrem(this.keys.versions, ...old);
    const results = await tx.exec();
    const failed = results?.find(([err]) => err !== null);
    if (results === null || failed !== undefined) {
      throw new ExpertMeshError(Code.UNAVAILABLE, "pruning placement versions failed", {
        cause: failed?.[0],
      });
    }
    return old.map(Number);
  }

  /**
   * Calls `listener` with each new current placement, in increasing version order. After the
   * subscription is active the current version is read once, so a version published before
   * (or while) subscribing is not missed.
   */
  async subscribe(
    listener: (placement: Placement) => void,
    options: PlacementSubscribeOptions,
  ): Promise<PlacementSubscription> {
    let delivered = options.afterVersion ?? 0;
    let chain: Promise<void> = Promise.resolve();
    const deliver = async (announced: number | undefined): Promise<void> => {
      try {
        if (announced !== undefined && announced <= delivered) return;
        // A version missing by now was pruned after a newer one was published: take current.
        const p = (announced === undefined ? undefined : await this.get(announced)) ?? (await this.current());
        if (p === undefined || p.version <= delivered) return;
        delivered = p.version;
        listener(p);
      } catch (err) {
        options.onError(err);
      }
    };
    const sub = this.#redis.duplicate();
    sub.on("message", (channel: string, message: string) => {
      if (channel !== this.keys.updates) return;
      const v = Number(message);
      chain = chain.then(() => deliver(Number.isSafeInteger(v) ? v : undefined));
    });
    sub.on("error", options.onError);
    try {
      await sub.subscribe(this.keys.updates);
    } catch (err) {
      sub.disconnect();
      throw ExpertMeshError.from(err);
    }
    chain = chain.then(() => deliver(undefined));
    return {
      close: async () => {
        await sub.quit();
        await chain;
      },
    };
  }
}
