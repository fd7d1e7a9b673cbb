/**
 * Job changes over Redis pub/sub: every state-changing script publishes "<event>:<id>" on the
 * events channel, and each router holds one subscriber connection that hands the messages to
 * local listeners (WatchBatch streams, and the worker running a job, which must hear a cancel
 * made on any router). Pub/sub can drop messages across a reconnect, so listeners also re-read
 * the job now and then; an event only says "look again now".
 */
import type { Redis } from "ioredis";
import type { BatchEvent, BatchKeys } from "./batch-keys.ts";

export type BatchEventListener = (event: BatchEvent) => void;

export class BatchEvents {
  readonly #subscriber: Redis;
  readonly #keys: BatchKeys;
  readonly #listeners = new Map<string, Set<BatchEventListener>>();

  private constructor(subscriber: Redis, keys: BatchKeys) {
    this.#subscriber = subscriber;
    this.#keys = keys;
    subscriber.on("message", (channel: string, message: string) => {
      if (channel !== keys.events) return;
      const parsed = keys.parseEventMessage(message);
      if (parsed === undefined) return;
      for (const listener of this.#listeners.get(parsed.batchId) ?? []) listener(parsed.event);
    });
  }

  /** Subscribes on a connection of its own (a subscribed connection can do nothing else). */
  static async open(redis: Redis, keys: BatchKeys): Promise<BatchEvents> {
    const subscriber = redis.duplicate();
    await subscriber.subscribe(keys.events);
    return new BatchEvents(subscriber, keys);
  }

  /** Calls `listener` on every event of `batchId` until the returned function is called. */
  on(batchId: string, listener: BatchEventListener): () => void {
    let set = this.#listeners.get(batchId);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(batchId, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.#listeners.get(batchId) === set) this.#listeners.delete(batchId);
    };
  }

  /**
   * Resolves at the next event of `batchId`, after `timeoutMs`, or when `signal` aborts,
   * whichever comes first (the caller re-reads the job in every case).
   */
  next(batchId: string, timeoutMs: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        off();
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const off = this.on(batchId, done);
      const timer = setTimeout(done, timeoutMs);
      if (signal.aborted) done();
      else signal.addEventListener("abort", done, { once: true });
    });
  }

  async close(): Promise<void> {
    this.#listeners.clear();
    await this.#subscriber.quit();
  }

  get channel(): string {
    return this.#keys.events;
  }
}
