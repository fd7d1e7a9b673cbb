/**
 * Admission: which attention node takes a request (data-parallel choice), and the bounded queue
 * of requests waiting for a free slot. A node has `maxRunning` slots (what its scheduler runs at
 * once); the router fills them up to that and no further, so a node's own waiting queue stays
 * short and the router's queue is where overload shows: when it is full, new requests get
 * RESOURCE_EXHAUSTED (HTTP 429) at once instead of waiting without bound.
 */
import { Code, ExpertMeshError } from "@expertmesh/shared";
import type { NodeLoad } from "./attention-pool.ts";

export type Choice = { readonly node: string } | { readonly busy: true } | { readonly unavailable: true };

/**
 * The least-loaded serving node with a free slot for a prompt of `promptTokens`: nodes whose free
 * KV blocks hold the prompt first, then the fewest sequences (the larger of the router's in-flight
 * count and the node's running + waiting, which also counts other routers' work), then the most
 * free KV blocks, then the id (deterministic). `busy` when every serving node is full,
 * `unavailable` when none is serving.
 */
export function chooseAttentionNode(nodes: readonly NodeLoad[], promptTokens: number): Choice {
  let best: NodeLoad | undefined;
  let bestKey: readonly number[] = [];
  let anyServing = false;
  for (const n of nodes) {
    if (!n.serving) continue;
    anyServing = true;
    if (n.inFlight >= n.maxRunning) continue;
    const needBlocks = Math.ceil((promptTokens + 1) / Math.max(1, n.kvBlockSize));
    const key = [
      n.freeKvBlocks >= needBlocks ? 0 : 1,
      Math.max(n.inFlight, n.running + n.waiting),
      -n.freeKvBlocks,
    ];
    if (
      best === undefined ||
      compareKeys(key, bestKey) < 0 ||
      (compareKeys(key, bestKey) === 0 && n.id < best.id)
    ) {
      best = n;
      bestKey = key;
    }
  }
  if (best !== undefined) return { node: best.id };
  return anyServing ? { busy: true } : { unavailable: true };
}

function compareKeys(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return 0;
}

export type Priority = "interactive" | "batch";

export interface AdmissionOptions {
  /** Requests that may wait; one more is RESOURCE_EXHAUSTED. */
  readonly maxQueued: number;
  /** Current loads of every node. */
  readonly loads: () => readonly NodeLoad[];
}

export interface AdmitRequest<T> {
  readonly priority: Priority;
  readonly promptTokens: number;
  /** Aborting removes a waiting request (the promise rejects with the signal's reason). */
  readonly signal?: AbortSignal;
  /**
   * Starts the request on the chosen node, synchronously, so the node's in-flight count rises
   * before the next choice is made. Its result is what `admit` resolves to.
   */
  readonly start: (nodeId: string) => T;
}

interface Waiter {
  readonly priority: Priority;
  readonly promptTokens: number;
  readonly admit: (nodeId: string) => void;
  readonly reject: (error: unknown) => void;
}

export class AdmissionQueue {
  readonly #options: AdmissionOptions;
  /** Interactive waiters are served before batch ones; FIFO within a priority. */
  readonly #queues: Record<Priority, Waiter[]> = { interactive: [], batch: [] };
  #closed: ExpertMeshError | undefined;

  constructor(options: AdmissionOptions) {
    this.#options = options;
  }

  /** Requests waiting for a slot. */
  get size(): number {
    return this.#queues.interactive.length + this.#queues.batch.length;
  }

  /**
   * Starts the request on a node now if one has a free slot and nobody waits ahead of it; else
   * queues it (RESOURCE_EXHAUSTED when the queue is full) until `pump` finds it a slot.
   * UNAVAILABLE when no node is serving.
   */
  async admit<T>(request: AdmitRequest<T>): Promise<T> {
    // No await before `start`: a request that finds a free slot starts synchronously.
    if (this.#closed !== undefined) throw this.#closed;
    if (request.signal?.aborted === true) throw toError(request.signal.reason);
    const ahead = request.priority === "interactive" ? this.#queues.interactive.length : this.size;
    const choice = chooseAttentionNode(this.#options.loads(), request.promptTokens);
    if ("unavailable" in choice) throw noNodeError();
    if ("node" in choice && ahead === 0) return request.start(choice.node);
    if (this.size >= this.#options.maxQueued) {
      throw new ExpertMeshError(
        Code.RESOURCE_EXHAUSTED,
        `the server is overloaded: ${this.size} requests are already waiting; retry later`,
        { details: { max_queued_requests: String(this.#options.maxQueued) } },
      );
    }
    return new Promise<T>((resolve, reject) => {
      const { signal } = request;
      const onAbort = (): void => {
        this.#remove(waiter);
        reject(toError(signal?.reason));
      };
      const waiter: Waiter = {
        priority: request.priority,
        promptTokens: request.promptTokens,
        admit: (nodeId) => {
          signal?.removeEventListener("abort", onAbort);
          try {
            resolve(request.start(nodeId));
          } catch (err) {
            reject(toError(err));
          }
        },
        reject: (error) => {
          signal?.removeEventListener("abort", onAbort);
          reject(toError(error));
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#queues[request.priority].push(waiter);
    });
  }

  /** Gives free slots to waiters, in order; fails them all when no node is serving any more. */
  pump(): void {
    for (;;) {
      const waiter = this.#queues.interactive[0] ?? this.#queues.batch[0];
      if (waiter === undefined) return;
      const choice = chooseAttentionNode(this.#options.loads(), waiter.promptTokens);
      if ("busy" in choice) return;
      this.#queues[waiter.priority].shift();
      if ("node" in choice) waiter.admit(choice.node);
      else waiter.reject(noNodeError());
    }
  }

  /** Refuses new requests with `error` and fails every waiting one with it (shutdown). */
  close(error: ExpertMeshError): void {
    this.#closed = error;
    for (const queue of Object.values(this.#queues)) {
      for (const waiter of queue.splice(0)) waiter.reject(error);
    }
  }

  #remove(waiter: Waiter): void {
    const queue = this.#queues[waiter.priority];
    const i = queue.indexOf(waiter);
    if (i !== -1) queue.splice(i, 1);
  }
}

/** Abort reasons are Errors here (ExpertMeshError); anything else is wrapped, never lost. */
function toError(reason: unknown): Error {
  return reason instanceof Error
    ? reason
    : new ExpertMeshError(Code.CANCELLED, "request cancelled", { cause: reason });
}

function noNodeError(): ExpertMeshError {
  return new ExpertMeshError(Code.UNAVAILABLE, "no attention node is available; retry later");
}
