import type { Readable } from "node:stream";
import { AsyncQueue } from "./async-queue.ts";

export interface ReadableIteratorOptions {
  /** What the consumer sees for an 'error' event's value (raised after the messages before it). */
  mapError: (error: unknown) => Error;
  /** What the consumer sees when the stream closes without 'end' (a cancelled call). */
  prematureClose: () => Error;
  /** Called when the consumer stops early (breaks out of its loop). */
  onReturn?: () => void;
  /**
   * Server calls: grpc-js reports a client's cancellation as a half-close first and as a
   * cancellation a moment later. When given, the end of the stream is settled one macrotask
   * later, and if this then says the call was cancelled, the consumer gets prematureClose().
   */
  isCancelled?: () => boolean;
  /** Messages buffered before the stream is paused (HTTP/2 flow control then holds the peer). */
  highWaterMark?: number;
}

const DEFAULT_HIGH_WATER_MARK = 16;

/**
 * Reads an object-mode stream (a grpc-js call) as an AsyncIterable with backpressure: the
 * stream is paused while `highWaterMark` messages wait, and resumed when the consumer catches up.
 * Listeners are attached at once, so an early 'error' is never unhandled.
 */
export function iterateReadable<T>(stream: Readable, options: ReadableIteratorOptions): AsyncIterable<T> {
  const highWaterMark = options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK;
  let error: { value: unknown } | undefined;
  let ended = false;
  let settled = false;
  const queue = new AsyncQueue<T>({
    onTake: (buffered) => {
      if (buffered <= highWaterMark >> 1 && stream.isPaused()) stream.resume();
    },
    onReturn: () => {
      // Keep the stream flowing so nothing stalls; what still arrives is dropped.
      stream.resume();
      options.onReturn?.();
    },
  });
  const settle = (): void => {
    if (settled) return;
    settled = true;
    if (error !== undefined) queue.fail(options.mapError(error.value));
    else if (ended && options.isCancelled?.() !== true) queue.close();
    else queue.fail(options.prematureClose());
  };
  stream.on("data", (message: T) => {
    if (queue.push(message) && queue.size >= highWaterMark) stream.pause();
  });
  // Recorded, not raised at once: grpc-js ends the stream right after, and messages that arrived
  // before the error must still reach the consumer first.
  stream.on("error", (e: unknown) => {
    error ??= { value: e };
    if (stream.readableEnded || stream.destroyed) settle();
  });
  stream.on("end", () => {
    ended = true;
    if (options.isCancelled === undefined) settle();
    else setImmediate(settle);
  });
  stream.on("close", settle);
  return queue;
}
