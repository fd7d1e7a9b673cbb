/**
 * ExpertService handlers. Dispatch: requests of a stream are handled one after another, in order,
 * each answered by exactly one response — decode → core.compute → encode; any failure of one
 * request (bad sizes, unknown layer, wrong placement version, expert not held) becomes that
 * response's in-band error and the stream goes on. GetWorkerInfo: who this worker is.
 *
 * Draining: a stream keeps answering requests while they arrive less than `drainQuietMs` apart
 * (those in transit when the drain began), for at most `drainAcceptMs`; then it answers what it
 * has buffered and ends (status OK). The attention node sees the end and re-dispatches anything
 * it still had in flight (UNAVAILABLE, retryable).
 */
import { decodeDispatchRequest, dispatchErrorResponse, encodeDispatchResponse } from "@expertmesh/dispatch";
import type { DispatchResponseInit } from "@expertmesh/dispatch";
import type { DispatchRequest, ExpertService, MemberStatus } from "@expertmesh/proto";
import { Code, toWireStatus } from "@expertmesh/shared";
import type { CallContext, Logger, ServiceImpl } from "@expertmesh/shared";
import type { ExpertWorker } from "../core/expert-worker.ts";
import { codeLabel } from "./worker-metrics.ts";
import type { WorkerMetrics } from "./worker-metrics.ts";

export interface ExpertServiceOptions {
  readonly worker: ExpertWorker;
  readonly metrics: WorkerMetrics;
  readonly logger: Logger;
  /** The member status GetWorkerInfo reports (from the service lifecycle). */
  readonly status: () => MemberStatus;
  /** While draining, a stream ends after this long without a request; 100 ms by default. */
  readonly drainQuietMs?: number;
  /** While draining, no request arriving later than this after the drain began is taken; 1 s by default. */
  readonly drainAcceptMs?: number;
}

const DRAINED = Symbol("drained");
const WOKEN = Symbol("woken");

export class ExpertServiceHandlers {
  readonly #worker: ExpertWorker;
  readonly #metrics: WorkerMetrics;
  readonly #logger: Logger;
  readonly #status: () => MemberStatus;
  readonly #hiddenSize: number;
  readonly #drainQuietMs: number;
  readonly #drainAcceptMs: number;
  #activeStreams = 0;
  /** performance.now() when the drain began; undefined while serving. */
  #drainStartedAt: number | undefined;
  /** Wakes streams waiting for their next request when the drain starts. */
  readonly #waiting = new Set<() => void>();
  #idle: (() => void) | undefined;

  constructor(options: ExpertServiceOptions, hiddenSize: number) {
    this.#worker = options.worker;
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#status = options.status;
    this.#hiddenSize = hiddenSize;
    this.#drainQuietMs = options.drainQuietMs ?? 100;
    this.#drainAcceptMs = options.drainAcceptMs ?? 1_000;
  }

  /** The ServiceImpl to add to the gRPC server. */
  impl(): ServiceImpl<typeof ExpertService> {
    return {
      dispatch: (requests, context) => this.#dispatch(requests, context),
      getWorkerInfo: () => Promise.resolve(this.#info()),
    };
  }

  /** Open Dispatch streams. */
  get activeStreams(): number {
    return this.#activeStreams;
  }

  /**
   * Stops taking new streams and, shortly, new requests (see the file comment). Resolves when
   * all streams have ended (or when `signal` aborts — the caller's drain deadline).
   */
  async drain(signal: AbortSignal): Promise<void> {
    this.#drainStartedAt ??= performance.now();
    for (const wake of this.#waiting) wake();
    this.#waiting.clear();
    if (this.#activeStreams === 0) return;
    await new Promise<void>((resolve) => {
      this.#idle = resolve;
      signal.addEventListener("abort", () => resolve(), { once: true });
    });
  }

  /** Handles one request; never throws (failures are the response's in-band error). */
  async handle(request: DispatchRequest): Promise<DispatchResponseInit> {
    const started = performance.now();
    const layer = String(request.layer);
    this.#metrics.inFlight.inc();
    let response: DispatchResponseInit;
    let code = Code.OK;
    try {
      const decoded = decodeDispatchRequest(request, { hiddenSize: this.#hiddenSize });
      const sums = await this.#worker.compute(decoded);
      response = encodeDispatchResponse(
        request,
        sums,
        decoded.combineDtype,
        (performance.now() - started) * 1000,
      );
      this.#metrics.rows.inc({ layer }, request.numRows);
    } catch (err) {
      code = toWireStatus(err).code;
      if (code === Code.INTERNAL || code === Code.UNKNOWN || code === Code.DATA_LOSS) {
        this.#logger.error(
          { err, microBatchId: request.microBatchId, layer: request.layer },
          "dispatch request failed",
        );
      } else {
        this.#logger.debug(
          { err, microBatchId: request.microBatchId, layer: request.layer },
          "dispatch request refused",
        );
      }
      response = dispatchErrorResponse(request, err, (performance.now() - started) * 1000);
    } finally {
      this.#metrics.inFlight.dec();
    }
    this.#metrics.requests.inc({ layer, code: codeLabel(code) });
    this.#metrics.latency.observe({ layer }, (performance.now() - started) / 1000);
    return response;
  }

  async *#dispatch(
    requests: AsyncIterable<DispatchRequest>,
    _context: CallContext,
  ): AsyncGenerator<DispatchResponseInit> {
    if (this.#drainStartedAt !== undefined) return;
    this.#activeStreams++;
    this.#metrics.streams.inc();
    const iterator = requests[Symbol.asyncIterator]();
    try {
      for (;;) {
        // Requests already received win the race against the drain (listed first), so a
        // draining stream answers everything buffered before it ends.
        const next = await this.#nextUnlessDrained(iterator);
        if (next === DRAINED || next.done === true) break;
        yield await this.handle(next.value);
      }
    } finally {
      void iterator.return?.();
      this.#activeStreams--;
      this.#metrics.streams.dec();
      if (this.#activeStreams === 0) this.#idle?.();
    }
  }

  /** The stream's next request; DRAINED once the drain has let the stream go quiet. */
  async #nextUnlessDrained(
    iterator: AsyncIterator<DispatchRequest>,
  ): Promise<IteratorResult<DispatchRequest> | typeof DRAINED> {
    const next = iterator.next();
    for (;;) {
      const waitMs = this.#drainWaitMs();
      // Listed first, a request already buffered wins over DRAINED.
      if (waitMs === 0) return Promise.race([next, Promise.resolve(DRAINED)]);
      let wake: () => void = () => {};
      const woken = new Promise<typeof WOKEN>((resolve) => (wake = () => resolve(WOKEN)));
      this.#waiting.add(wake);
      const timer = waitMs === Infinity ? undefined : setTimeout(wake, waitMs);
      try {
        const result = await Promise.race([next, woken]);
        if (result !== WOKEN) return result;
      } finally {
        this.#waiting.delete(wake);
        clearTimeout(timer);
      }
      // Woken by the drain's start (wait again, now with the quiet timer) or by that timer (quiet: stop).
      if (waitMs !== Infinity) return Promise.race([next, Promise.resolve(DRAINED)]);
    }
  }

  /** How long to wait for a stream's next request: forever while serving, then the quiet period (0 when the accept window is over). */
  #drainWaitMs(): number {
    if (this.#drainStartedAt === undefined) return Infinity;
    const left = this.#drainStartedAt + this.#drainAcceptMs - performance.now();
    return Math.max(0, Math.min(this.#drainQuietMs, left));
  }

  #info() {
    const { placement, held } = this.#worker;
    return {
      workerId: held.workerId,
      node: held.node,
      status: this.#status(),
      placementVersion: placement.version,
      slices: placement.shape.moeLayers.map((layer, l) => ({
        layer,
        physicalExpertIds: Array.from(held.slice.physical[l] ?? []),
        logicalExpertIds: Array.from(held.slice.logical[l] ?? []),
      })),
    };
  }
}
