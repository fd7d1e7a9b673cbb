/**
 * The attention side of one worker's Dispatch stream: one long-lived bidi call, requests written
 * as they come, responses matched to requests in order (the worker answers in request order).
 * A broken stream fails everything pending on it with UNAVAILABLE — never a hang — and the next
 * request opens a fresh stream (so a restarted worker is picked up again).
 */
import { ExpertService } from "@expertmesh/proto";
import type { DispatchRequestSchema, DispatchResponse, DispatchResponseSchema } from "@expertmesh/proto";
import { Code, ExpertMeshError, createGrpcChannel, createGrpcClient } from "@expertmesh/shared";
import type { BidiStream, GrpcChannel, GrpcChannelOptions, GrpcClient } from "@expertmesh/shared";
import { checkDispatchResponse } from "../codecs/dispatch-messages.ts";
import type { DispatchRequestInit, ExpectedResponse } from "../codecs/dispatch-messages.ts";

export interface WorkerStreamOptions {
  readonly workerId: string;
  /** "host:port" of the worker's gRPC server. */
  readonly address: string;
  readonly channel?: GrpcChannelOptions;
  /** Called once per stream that breaks (not for one closed by `close`), with the error pending calls got. */
  readonly onBroken?: (error: ExpertMeshError) => void;
}

/** How long `close` lets the worker answer what is in flight before cancelling. */
export const DEFAULT_CLOSE_GRACE_MS = 5_000;

interface Pending {
  readonly expected: ExpectedResponse;
  readonly resolve: (sums: Uint8Array) => void;
  readonly reject: (error: unknown) => void;
  readonly timer: NodeJS.Timeout;
  /** Set once settled (deadline passed); its response, when it comes, is then dropped. */
  done: boolean;
}

interface OpenStream {
  readonly call: BidiStream<typeof DispatchRequestSchema, typeof DispatchResponseSchema>;
  /** Requests written and not yet answered, oldest first. */
  readonly pending: Pending[];
  /** The reader has finished: nothing more is accepted on this call. */
  ended: boolean;
  /** Resolves when the reader has finished and everything pending has been settled. */
  readonly finished: Promise<void>;
}

export class WorkerStream {
  readonly workerId: string;
  readonly address: string;
  readonly #channel: GrpcChannel;
  readonly #client: GrpcClient<typeof ExpertService>;
  readonly #onBroken: ((error: ExpertMeshError) => void) | undefined;
  #stream: OpenStream | undefined;
  #closing = false;

  constructor(options: WorkerStreamOptions) {
    this.workerId = options.workerId;
    this.address = options.address;
    this.#channel = createGrpcChannel(options.address, options.channel);
    this.#client = createGrpcClient(ExpertService, this.#channel);
    this.#onBroken = options.onBroken;
  }

  /** Requests written and not answered yet (including ones past their deadline). */
  get inFlight(): number {
    return this.#stream?.pending.length ?? 0;
  }

  /** Resolves once the channel is connected; UNAVAILABLE after `timeoutMs`. */
  waitForReady(timeoutMs: number): Promise<void> {
    return this.#channel.waitForReady(timeoutMs);
  }

  /** The worker's own description (GetWorkerInfo). */
  info(timeoutMs: number): ReturnType<GrpcClient<typeof ExpertService>["getWorkerInfo"]> {
    return this.#client.getWorkerInfo({}, { timeoutMs });
  }

  /**
   * Sends one request and resolves with its response's sums bytes (checked against `expected`).
   * Rejects with the worker's in-band error, UNAVAILABLE if the stream breaks first, or
   * DEADLINE_EXCEEDED at `deadline` (epoch ms).
   */
  request(message: DispatchRequestInit, expected: ExpectedResponse, deadline: number): Promise<Uint8Array> {
    if (this.#closing) {
      return Promise.reject(
        new ExpertMeshError(Code.UNAVAILABLE, `worker ${this.workerId}: dispatch client is closed`),
      );
    }
    const stream = this.#open();
    return new Promise<Uint8Array>((resolve, reject) => {
      const entry: Pending = {
        expected,
        resolve,
        reject,
        done: false,
        timer: setTimeout(
          () => {
            entry.done = true;
            reject(
              new ExpertMeshError(
                Code.DEADLINE_EXCEEDED,
                `worker ${this.workerId}: no response to micro-batch ${expected.microBatchId} layer ${expected.layer} within the deadline`,
                { details: { workerId: this.workerId } },
              ),
            );
          },
          Math.max(0, deadline - Date.now()),
        ),
      };
      stream.pending.push(entry);
      try {
        stream.call.send(message);
      } catch (err) {
        // Only a half-closed call refuses a write; the reader settles the rest of the queue.
        stream.pending.pop();
        clearTimeout(entry.timer);
        reject(unavailable(this.workerId, this.address, err));
      }
    });
  }

  /**
   * Half-closes the stream: the worker answers what it has, then ends the call; pending requests
   * settle normally. After `graceMs` the call is cancelled instead (a stuck worker cannot hold
   * the close up). Then closes the channel.
   */
  async close(graceMs = DEFAULT_CLOSE_GRACE_MS): Promise<void> {
    this.#closing = true;
    const stream = this.#stream;
    if (stream !== undefined && !stream.ended) {
      stream.call.end();
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
      await Promise.race([stream.finished, expired.then(() => stream.call.cancel())]);
      clearTimeout(timer);
      await stream.finished;
    }
    this.#channel.close();
  }

  /** Cancels the stream at once (pending requests fail with CANCELLED) and closes the channel. */
  abort(): void {
    this.#closing = true;
    this.#stream?.call.cancel();
    this.#channel.close();
  }

  #open(): OpenStream {
    const current = this.#stream;
    if (current !== undefined && !current.ended) return current;
    const call = this.#client.dispatch();
    const pending: Pending[] = [];
    let finish: () => void = () => {};
    const stream: OpenStream = {
      call,
      pending,
      ended: false,
      finished: new Promise((resolve) => (finish = resolve)),
    };
    this.#stream = stream;
    void this.#read(stream).finally(finish);
    return stream;
  }

  async #read(stream: OpenStream): Promise<void> {
    let failure: ExpertMeshError;
    try {
      for await (const response of stream.call) {
        const entry = stream.pending.shift();
        if (entry === undefined) {
          throw new ExpertMeshError(
            Code.INTERNAL,
            `micro-batch ${response.microBatchId} layer ${response.layer} answered but never asked`,
          );
        }
        const { microBatchId, layer } = entry.expected;
        if (response.microBatchId !== microBatchId || response.layer !== layer) {
          stream.pending.unshift(entry);
          throw new ExpertMeshError(
            Code.INTERNAL,
            `out of step: answer for micro-batch ${response.microBatchId} layer ${response.layer}, expected micro-batch ${microBatchId} layer ${layer}`,
          );
        }
        settle(entry, response, this.workerId);
      }
      failure = new ExpertMeshError(
        Code.UNAVAILABLE,
        `worker ${this.workerId} (${this.address}) ended its dispatch stream`,
        {
          details: { workerId: this.workerId },
        },
      );
    } catch (err) {
      failure = this.#closing
        ? new ExpertMeshError(Code.CANCELLED, `worker ${this.workerId}: dispatch client closed`, {
            cause: err,
          })
        : unavailable(this.workerId, this.address, err);
      // An out-of-step stream is useless: drop it (a no-op when it already failed).
      stream.call.cancel();
    }
    stream.ended = true;
    if (this.#stream === stream) this.#stream = undefined;
    const left = stream.pending.splice(0);
    for (const entry of left) {
      clearTimeout(entry.timer);
      if (!entry.done) entry.reject(failure);
    }
    if (!this.#closing) this.#onBroken?.(failure);
  }
}

function settle(entry: Pending, response: DispatchResponse, workerId: string): void {
  clearTimeout(entry.timer);
  if (entry.done) return;
  entry.done = true;
  try {
    entry.resolve(checkDispatchResponse(response, entry.expected, `worker ${workerId}`));
  } catch (err) {
    entry.reject(err);
  }
}

function unavailable(workerId: string, address: string, cause: unknown): ExpertMeshError {
  const e = ExpertMeshError.from(cause);
  return new ExpertMeshError(
    Code.UNAVAILABLE,
    `worker ${workerId} (${address}) dispatch stream failed: ${e.message}`,
    {
      cause,
      details: { workerId },
    },
  );
}
