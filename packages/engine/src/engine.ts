import { randomUUID } from "node:crypto";
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import type { AddRequestParams, EngineCore, EngineCoreOutput, StepStats } from "./engine-core.ts";

export interface GenerateOptions {
  /** Cancels the request: its blocks are freed at the next step and the iterator throws CANCELLED. */
  signal?: AbortSignal;
}

export interface EngineOptions {
  /** Called after every step that ran the model (metrics, tests). */
  onStep?: (stats: StepStats) => void;
}

/** One request's queue of outputs between the step loop and its consumer. */
class OutputStream implements AsyncIterableIterator<EngineCoreOutput> {
  private readonly queue: EngineCoreOutput[] = [];
  private waiter: {
    resolve: (r: IteratorResult<EngineCoreOutput>) => void;
    reject: (e: Error) => void;
  } | null = null;
  private ended = false;
  private failure: Error | null = null;
  private readonly onReturn: () => void;
  /** Runs once when the stream ends, however it ends (detaches the AbortSignal listener). */
  onEnd: (() => void) | null = null;

  constructor(onReturn: () => void) {
    this.onReturn = onReturn;
  }

  private end(): void {
    this.ended = true;
    const onEnd = this.onEnd;
    this.onEnd = null;
    onEnd?.();
  }

  get isEnded(): boolean {
    return this.ended;
  }

  push(output: EngineCoreOutput): void {
    if (this.ended) return;
    if (output.finishReason === "error") {
      this.fail(output.error ?? new ExpertMeshError(Code.INTERNAL, "request failed"));
      return;
    }
    if (output.finishReason !== null) this.end();
    const w = this.waiter;
    if (w !== null) {
      this.waiter = null;
      w.resolve({ value: output, done: false });
    } else {
      this.queue.push(output);
    }
  }

  /** Ends the stream with an error once the outputs already queued are read. */
  fail(err: Error): void {
    if (this.ended) return;
    this.end();
    this.failure = err;
    const w = this.waiter;
    if (w !== null) {
      this.waiter = null;
      w.reject(err);
    }
  }

  next(): Promise<IteratorResult<EngineCoreOutput>> {
    const value = this.queue.shift();
    if (value !== undefined) return Promise.resolve({ value, done: false });
    if (this.failure !== null) {
      const err = this.failure;
      this.failure = null;
      return Promise.reject(err);
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** The consumer stopped reading (`break` in for-await): the request is aborted. */
  return(): Promise<IteratorResult<EngineCoreOutput>> {
    if (!this.ended) this.onReturn();
    this.end();
    this.queue.length = 0;
    this.failure = null;
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<EngineCoreOutput> {
    return this;
  }
}

/**
 * The in-process async face of an EngineCore: runs the step loop while there is work and
 * hands each request an async iterator of its outputs. The loop yields to the event loop
 * between steps so that new requests and cancellations land at step boundaries. If a step
 * itself throws (a bug, not a request failure) the engine is dead: every open request fails
 * with UNAVAILABLE and new requests are refused.
 */
export class Engine {
  readonly core: EngineCore;
  private readonly onStep: ((stats: StepStats) => void) | undefined;
  private readonly streams = new Map<string, OutputStream>();
  /** The step loop while it runs; `looping` flips in the same tick as its last work check. */
  private loop: Promise<void> = Promise.resolve();
  private looping = false;
  private dead: ExpertMeshError | null = null;

  constructor(core: EngineCore, options: EngineOptions = {}) {
    this.core = core;
    this.onStep = options.onStep;
  }

  get isDead(): boolean {
    return this.dead !== null;
  }

  get numOpenRequests(): number {
    return this.streams.size;
  }

  /**
   * Starts a request. Bad input throws here, synchronously (INVALID_ARGUMENT, RESOURCE_EXHAUSTED,
   * ALREADY_EXISTS). The iterator yields one output per step that gave the request a token and ends
   * after the one whose finishReason is set; a failed request makes it throw that error.
   */
  generate(
    params: Omit<AddRequestParams, "requestId"> & { requestId?: string },
    options: GenerateOptions = {},
  ): AsyncIterableIterator<EngineCoreOutput> {
    if (this.dead !== null) throw this.dead;
    const { signal } = options;
    if (signal?.aborted === true) throw cancelled();
    const requestId = params.requestId ?? randomUUID();
    this.core.addRequest({ ...params, requestId });
    const stream = new OutputStream(() => this.release(requestId));
    this.streams.set(requestId, stream);
    if (signal !== undefined) {
      const onAbort = (): void => {
        if (stream.isEnded) return;
        stream.fail(cancelled());
        this.release(requestId);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      stream.onEnd = () => signal.removeEventListener("abort", onAbort);
    }
    this.kick();
    return stream;
  }

  /** Aborts a request from the server side: its iterator ends with a finishReason "abort" output. */
  abort(requestId: string): boolean {
    return this.core.abort(requestId);
  }

  /** Aborts everything and waits for the loop to drain. */
  async close(): Promise<void> {
    for (const requestId of this.streams.keys()) this.core.abort(requestId);
    this.kick();
    await this.loop;
  }

  private release(requestId: string): void {
    this.streams.delete(requestId);
    this.core.abort(requestId);
    this.kick();
  }

  private kick(): void {
    if (this.looping || this.dead !== null) return;
    this.looping = true;
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    try {
      while (this.core.hasUnfinishedRequests()) {
        const { outputs, stats } = await this.core.step();
        for (const output of outputs) {
          const stream = this.streams.get(output.requestId);
          if (stream === undefined) continue;
          stream.push(output);
          if (output.finishReason !== null) this.streams.delete(output.requestId);
        }
        if (stats !== null) this.onStep?.(stats);
        await yieldToEventLoop();
      }
    } catch (err) {
      this.dead = new ExpertMeshError(Code.UNAVAILABLE, "engine failed; it accepts no more requests", {
        cause: err,
      });
      for (const stream of this.streams.values()) stream.fail(this.dead);
      this.streams.clear();
    } finally {
      this.looping = false;
    }
  }
}

function cancelled(): ExpertMeshError {
  return new ExpertMeshError(Code.CANCELLED, "request cancelled");
}
