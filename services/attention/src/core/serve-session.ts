/**
 * One router stream's view of the engine: its sequence ids ↔ engine request ids, per-sequence
 * deadlines, and the translation of engine outputs into tokens and finishes. A sequence's KV
 * blocks are freed when it finishes, is aborted, expires, or its stream goes away.
 */
import type { AddRequestParams, EngineCoreOutput, SampleLogprobs } from "@expertmesh/engine";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import type { SequenceEnd, SequenceRequest, SequenceToken, SessionListener } from "./session-output.ts";

/** What a session needs from the loop that owns the engine. */
export interface SessionHost {
  /** Queues a request for `session`; throws (synchronously) on bad input. */
  submit(session: ServeSession, params: AddRequestParams): void;
  /** Aborts at the next step boundary (the output still comes back, as finish reason "abort"). */
  abort(requestId: string): void;
  /** Aborts and forgets: no output about the request comes back. */
  discard(requestId: string): void;
  /** Why new sequences are refused right now (draining, dead); undefined when they are not. */
  refusal(): ExpertMeshError | undefined;
  detach(session: ServeSession): void;
}

interface LiveSequence {
  readonly sequenceId: number;
  readonly engineRequestId: string;
  readonly logprobs: boolean;
  readonly topLogprobs: number;
  /** Deadline timer, when the sequence has one. */
  timer: NodeJS.Timeout | undefined;
  /** The deadline passed: the abort it caused is reported as DEADLINE_EXCEEDED. */
  expired: boolean;
}

export class ServeSession {
  readonly id: number;
  readonly #host: SessionHost;
  readonly #listener: SessionListener;
  readonly #live = new Map<number, LiveSequence>();
  readonly #byRequest = new Map<string, LiveSequence>();
  #nextRequest = 0;
  #commandsEnded = false;
  #closed = false;

  constructor(id: number, host: SessionHost, listener: SessionListener) {
    this.id = id;
    this.#host = host;
    this.#listener = listener;
  }

  /** Sequences started and not yet finished. */
  get numLive(): number {
    return this.#live.size;
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  /** Starts a sequence; a refused one is answered at once with an error finish. */
  add(request: SequenceRequest): void {
    if (this.#closed) return;
    const { sequenceId } = request;
    const engineRequestId = `s${this.id}.q${sequenceId}.${this.#nextRequest++}`;
    try {
      const refusal = this.#host.refusal();
      if (refusal !== undefined) throw refusal;
      if (this.#live.has(sequenceId)) {
        throw new ExpertMeshError(
          Code.ALREADY_EXISTS,
          `sequence ${sequenceId} is already live on this stream`,
          {
            details: { field: "sequence_id" },
          },
        );
      }
      const wantsLogprobs = request.logprobs || request.topLogprobs > 0;
      this.#host.submit(this, {
        requestId: engineRequestId,
        promptTokenIds: request.promptTokenIds,
        sampling: { ...request.sampling, ...(wantsLogprobs ? { logprobs: request.topLogprobs } : {}) },
      });
    } catch (err) {
      this.reject(sequenceId, request.promptTokenIds.length, err);
      return;
    }
    const live: LiveSequence = {
      sequenceId,
      engineRequestId,
      logprobs: request.logprobs,
      topLogprobs: request.topLogprobs,
      timer: undefined,
      expired: false,
    };
    if (request.timeoutMs > 0) {
      live.timer = setTimeout(() => {
        live.expired = true;
        this.#host.abort(engineRequestId);
      }, request.timeoutMs);
      live.timer.unref();
    }
    this.#live.set(sequenceId, live);
    this.#byRequest.set(engineRequestId, live);
  }

  /** Answers a sequence that could not start (bad input, node draining) with an error finish. */
  reject(sequenceId: number, promptTokens: number, error: unknown): void {
    if (this.#closed) return;
    const finish: SequenceEnd = {
      sequenceId,
      reason: "error",
      error: ExpertMeshError.from(error),
      promptTokens,
      completionTokens: 0,
    };
    this.#listener.output({ tokens: [], finishes: [finish] });
  }

  /** Stops sequences; each live one is acknowledged by a "cancelled" finish. Unknown ids are ignored. */
  abort(sequenceIds: readonly number[]): void {
    for (const id of sequenceIds) {
      const live = this.#live.get(id);
      if (live !== undefined) this.#host.abort(live.engineRequestId);
    }
  }

  /** The router sent its last command: the stream ends once every live sequence has. */
  endCommands(): void {
    this.#commandsEnded = true;
    this.#maybeEnd();
  }

  /** The stream is gone (cancelled, broken): every live sequence is aborted, nothing more is sent. */
  cancel(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const live of this.#live.values()) {
      clearTimeout(live.timer);
      this.#host.discard(live.engineRequestId);
    }
    this.#live.clear();
    this.#byRequest.clear();
    this.#host.detach(this);
  }

  /** Ends the stream with an error (the engine died, or the node is stopping). */
  fail(error: ExpertMeshError): void {
    if (this.#closed) return;
    this.cancel();
    this.#listener.fail(error);
  }

  /** One step's outputs for this session's requests (engine order). */
  deliver(outputs: readonly EngineCoreOutput[]): void {
    if (this.#closed) return;
    const tokens: SequenceToken[] = [];
    const finishes: SequenceEnd[] = [];
    for (const out of outputs) {
      const live = this.#byRequest.get(out.requestId);
      if (live === undefined) continue;
      const lp = out.logprobs;
      out.newTokenIds.forEach((tokenId, i) => tokens.push(tokenOf(live, tokenId, lp?.[i])));
      if (out.finishReason === null) continue;
      clearTimeout(live.timer);
      this.#live.delete(live.sequenceId);
      this.#byRequest.delete(out.requestId);
      finishes.push(endOf(live, out));
    }
    if (tokens.length > 0 || finishes.length > 0) this.#listener.output({ tokens, finishes });
    this.#maybeEnd();
  }

  #maybeEnd(): void {
    if (this.#closed || !this.#commandsEnded || this.#live.size > 0) return;
    this.#closed = true;
    this.#host.detach(this);
    this.#listener.end();
  }
}

function tokenOf(live: LiveSequence, tokenId: number, lp: SampleLogprobs | undefined): SequenceToken {
  const top = live.topLogprobs > 0 && lp !== undefined ? lp.top.slice(0, live.topLogprobs) : [];
  return live.logprobs && lp !== undefined
    ? { sequenceId: live.sequenceId, tokenId, logprob: lp.chosen.logprob, top }
    : { sequenceId: live.sequenceId, tokenId, top };
}

function endOf(live: LiveSequence, out: EngineCoreOutput): SequenceEnd {
  const counts = { promptTokens: out.numPromptTokens, completionTokens: out.numOutputTokens };
  const base = { sequenceId: live.sequenceId, ...counts };
  switch (out.finishReason) {
    case "stop":
    case "length":
      return { ...base, reason: out.finishReason };
    case "abort":
      return live.expired
        ? {
            ...base,
            reason: "error",
            error: new ExpertMeshError(
              Code.DEADLINE_EXCEEDED,
              `sequence ${live.sequenceId} passed its deadline`,
            ),
          }
        : { ...base, reason: "cancelled" };
    default:
      return {
        ...base,
        reason: "error",
        error: out.error ?? new ExpertMeshError(Code.INTERNAL, "sequence failed"),
      };
  }
}
