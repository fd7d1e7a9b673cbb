import { Code, ExpertMeshError } from "@expertmesh/shared";

/**
 * The cap on batch generations in flight in one router, shared by every batch job it runs:
 * a FIFO semaphore. This cap is what keeps interactive traffic from being starved (see
 * batch-options.ts): batch work never holds more than `size` attention slots at once.
 */
export class BatchSlots {
  readonly size: number;
  #used = 0;
  readonly #waiters: { grant: () => void }[] = [];

  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1) {
      throw new ExpertMeshError(Code.INVALID_ARGUMENT, `batch slots must be a positive integer, got ${size}`);
    }
    this.size = size;
  }

  /** Slots held now. */
  get inUse(): number {
    return this.#used;
  }

  /** Generations waiting for a slot. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** Resolves once a slot is held (release it exactly once); rejects with the reason if `signal` aborts first. */
  acquire(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(abortReason(signal));
    if (this.#used < this.size && this.#waiters.length === 0) {
      this.#used++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        grant: () => {
          signal.removeEventListener("abort", onAbort);
          this.#used++;
          resolve();
        },
      };
      const onAbort = (): void => {
        const i = this.#waiters.indexOf(waiter);
        if (i !== -1) this.#waiters.splice(i, 1);
        reject(abortReason(signal));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  release(): void {
    if (this.#used === 0) throw new ExpertMeshError(Code.INTERNAL, "batch slot released twice");
    this.#used--;
    this.#waiters.shift()?.grant();
  }
}

function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new ExpertMeshError(Code.CANCELLED, "batch job stopped");
}
