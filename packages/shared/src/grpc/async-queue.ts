import { Code, ExpertMeshError } from "../errors.ts";

export interface AsyncQueueOptions {
  /** Called after the consumer took an item, with the number still buffered (for backpressure). */
  onTake?: (buffered: number) => void;
  /** Called once when the consumer stops early (`break` out of `for await`, or `return()`). */
  onReturn?: () => void;
}

/**
 * A single-consumer async queue: producers `push`, one `for await` loop consumes.
 * The natural shape for a bidi handler whose outputs do not follow its inputs one to one
 * (an engine loop pushes step outputs while another task reads commands): return the queue
 * from the handler and push into it.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private head = 0;
  private state: "open" | "closed" | "failed" | "returned" = "open";
  private failure: Error | undefined = undefined;
  private waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;
  private iterated = false;

  constructor(private readonly options: AsyncQueueOptions = {}) {}

  /** Items buffered and not yet taken. */
  get size(): number {
    return this.items.length - this.head;
  }

  /** False once the queue no longer accepts items (closed, failed, or the consumer stopped). */
  get isOpen(): boolean {
    return this.state === "open";
  }

  /** Adds an item; returns false (and drops it) when the queue is no longer open. */
  push(item: T): boolean {
    if (this.state !== "open") return false;
    const waiter = this.waiter;
    if (waiter !== undefined) {
      this.waiter = undefined;
      waiter.resolve({ value: item, done: false });
      this.options.onTake?.(this.size);
    } else {
      this.items.push(item);
    }
    return true;
  }

  /** Ends the queue; the consumer still gets every buffered item first. */
  close(): void {
    if (this.state !== "open") return;
    this.state = "closed";
    this.settleWaiter();
  }

  /** Ends the queue with an error, thrown to the consumer after the buffered items. */
  fail(error: Error): void {
    if (this.state !== "open") return;
    this.state = "failed";
    this.failure = error;
    this.settleWaiter();
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.iterated)
      throw new ExpertMeshError(Code.FAILED_PRECONDITION, "AsyncQueue has one consumer only");
    this.iterated = true;
    return {
      next: () => this.next(),
      return: () => {
        this.stop();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  private next(): Promise<IteratorResult<T>> {
    if (this.size > 0) {
      const value = this.items[this.head] as T;
      this.head++;
      // Compact now and then so a long-lived queue does not grow without bound.
      if (this.head > 1024 && this.head * 2 > this.items.length) {
        this.items.splice(0, this.head);
        this.head = 0;
      }
      this.options.onTake?.(this.size);
      return Promise.resolve({ value, done: false });
    }
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.state !== "open") return Promise.resolve({ value: undefined, done: true });
    if (this.waiter !== undefined) {
      return Promise.reject(
        new ExpertMeshError(Code.FAILED_PRECONDITION, "AsyncQueue.next called concurrently"),
      );
    }
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  private stop(): void {
    const wasOpen = this.state === "open";
    this.state = "returned";
    this.failure = undefined;
    this.items.length = 0;
    this.head = 0;
    this.settleWaiter();
    if (wasOpen) this.options.onReturn?.();
  }

  private settleWaiter(): void {
    const waiter = this.waiter;
    if (waiter === undefined) return;
    this.waiter = undefined;
    if (this.failure !== undefined) waiter.reject(this.failure);
    else waiter.resolve({ value: undefined, done: true });
  }
}
