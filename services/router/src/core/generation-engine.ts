/**
 * The router's GenerationService: validate and tokenize → admission (least-loaded attention node,
 * bounded queue) → the sequence on that node's stream → detokenize, stop strings → chunks. It
 * owns no I/O: nodes come in as an AttentionPool (gRPC streams in production), and what happens
 * is reported to a GenerationObserver (metrics). Cancellation and deadlines end the sequence on
 * its node, so the node frees its KV blocks.
 */
import { Code, ExpertMeshError } from "@expertmesh/shared";
import type { TextTokenizer } from "@expertmesh/tokenizer";
import { AdmissionQueue } from "./admission.ts";
import type { AttentionNodeHandle, AttentionPool, SequenceEnd } from "./attention-pool.ts";
import type { FinishReason, GenerationChunk, GenerationRequest, GenerationService } from "./generation.ts";
import { OutputProcessor } from "./output-processor.ts";
import { SequenceInbox } from "./sequence-inbox.ts";
import { resolveRequest } from "./validate-request.ts";
import type { ModelLimits, ResolvedRequest } from "./validate-request.ts";

/** How one request ended, for metrics. */
export interface RequestOutcome {
  /** "error" for every failure (validation, overload, node failure, deadline). */
  readonly reason: FinishReason;
  /** Status code of a failure. */
  readonly code: Code | undefined;
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Arrival → end. */
  readonly e2eSeconds: number;
  /** Arrival → first token; undefined when none came. */
  readonly ttftSeconds: number | undefined;
  /** Mean time between output tokens after the first; undefined with fewer than 2 tokens. */
  readonly tpotSeconds: number | undefined;
  /** Time spent waiting for a slot; undefined when never admitted. */
  readonly queueSeconds: number | undefined;
}

export interface GenerationObserver {
  onRequestEnd(outcome: RequestOutcome): void;
}

export interface GenerationEngineOptions {
  readonly pool: AttentionPool;
  readonly tokenizer: TextTokenizer | null;
  readonly modelName: string;
  readonly limits: ModelLimits;
  /** The model's EOS ids (their text is not returned). */
  readonly eosTokenIds: readonly number[];
  /** Requests that may wait for a slot before new ones get RESOURCE_EXHAUSTED. */
  readonly maxQueuedRequests: number;
  readonly observer?: GenerationObserver;
  /** Clock in milliseconds (injectable for tests). */
  readonly now?: () => number;
}

export class GenerationEngine implements GenerationService {
  readonly model: { name: string; maxModelLen: number; vocabSize: number };
  readonly #options: GenerationEngineOptions;
  readonly #admission: AdmissionQueue;
  readonly #nodes: ReadonlyMap<string, AttentionNodeHandle>;
  readonly #now: () => number;
  #active = 0;
  #idle: (() => void)[] = [];

  constructor(options: GenerationEngineOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.model = {
      name: options.modelName,
      maxModelLen: options.limits.maxModelLen,
      vocabSize: options.limits.vocabSize,
    };
    this.#nodes = new Map(options.pool.nodes.map((n) => [n.id, n]));
    this.#admission = new AdmissionQueue({
      maxQueued: options.maxQueuedRequests,
      loads: () => options.pool.nodes.map((n) => n.load()),
    });
    options.pool.onCapacityChange(() => this.#admission.pump());
  }

  /** Requests being generated on a node (admitted, not yet ended). */
  get numRunning(): number {
    let n = 0;
    for (const node of this.#nodes.values()) n += node.load().inFlight;
    return n;
  }

  /** Requests waiting for a free slot. */
  get numWaiting(): number {
    return this.#admission.size;
  }

  /** Generate calls not finished yet (validating, queued or running). */
  get numActive(): number {
    return this.#active;
  }

  /** Refuses new requests (UNAVAILABLE) and fails queued ones; running ones go on. */
  close(reason = "the router is shutting down"): void {
    this.#admission.close(new ExpertMeshError(Code.UNAVAILABLE, reason));
  }

  /** Resolves once no generate call is active (or when `signal` aborts). */
  async idle(signal?: AbortSignal): Promise<void> {
    if (this.#active === 0) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        signal?.removeEventListener("abort", done);
        resolve();
      };
      this.#idle.push(done);
      signal?.addEventListener("abort", done, { once: true });
    });
  }

  generate(req: GenerationRequest, signal: AbortSignal): AsyncIterable<GenerationChunk> {
    return this.#generate(req, signal);
  }

  async *#generate(req: GenerationRequest, signal: AbortSignal): AsyncGenerator<GenerationChunk> {
    const arrival = this.#now();
    this.#active++;
    let resolved: ResolvedRequest | undefined;
    let admittedAt: number | undefined;
    let firstTokenAt: number | undefined;
    let lastTokenAt: number | undefined;
    let outputTokens = 0;
    let finalReason: FinishReason | undefined;
    let failure: unknown;
    let node: AttentionNodeHandle | undefined;
    let sequenceId = -1;
    let inbox = new SequenceInbox();
    const deadline = new DeadlineSignal(req.deadline, this.#now);
    const stop = AbortSignal.any([signal, deadline.signal]);
    try {
      deadline.check();
      resolved = resolveRequest(req, this.#options.limits, this.#options.tokenizer);
      const request = resolved;
      const processor = new OutputProcessor({
        tokenizer: this.#options.tokenizer,
        detokenize: request.detokenize,
        promptTokenIds: request.promptTokenIds,
        stop: request.sampling.stop,
        stopTokenIds: request.sampling.stopTokenIds,
        eosTokenIds: this.#options.eosTokenIds,
        ignoreEos: request.sampling.ignoreEos,
        logprobs: request.logprobs,
      });
      const admit = async (): Promise<AttentionNodeHandle> => {
        const target = new SequenceInbox();
        inbox = target;
        return this.#admission.admit({
          priority: request.priority,
          promptTokens: request.promptTokenIds.length,
          signal: stop,
          start: (nodeId) => {
            const chosen = this.#nodes.get(nodeId) as AttentionNodeHandle;
            sequenceId = chosen.startSequence(
              {
                requestId: request.requestId,
                promptTokenIds: request.promptTokenIds,
                sampling: request.sampling,
                logprobs: request.logprobs,
                topLogprobs: request.topLogprobs,
                timeoutMs: deadline.remainingMs(),
              },
              target,
            );
            return chosen;
          },
        });
      };
      node = await admit();
      let attempts = 1;
      admittedAt = this.#now();

      for (;;) {
        const batch = await inbox.take(stop);
        if (batch.tokens.length > 0) {
          const at = this.#now();
          firstTokenAt ??= at;
          lastTokenAt = at;
          const chunk = processor.push(batch.tokens);
          outputTokens = processor.completionTokens;
          if (chunk.finishReason !== undefined) {
            finalReason = chunk.finishReason;
            yield chunk;
            return;
          }
          if (chunk.tokenIds.length > 0 || chunk.text.length > 0) yield chunk;
        }
        if (batch.end !== undefined) {
          if (
            batch.end.reason === "error" &&
            firstTokenAt === undefined &&
            attempts < MAX_ATTEMPTS &&
            isRefusal(batch.end)
          ) {
            // Refused before any token (the node started draining, or its stream broke): nothing
            // was generated, so another node can take the request as if it were new.
            attempts++;
            node = undefined;
            node = await admit();
            continue;
          }
          if (batch.end.reason === "error") {
            throw (
              batch.end.error ?? new ExpertMeshError(Code.INTERNAL, "sequence failed on its attention node")
            );
          }
          const final = processor.finish(batch.end.reason, batch.end.usage);
          finalReason = final.finishReason;
          outputTokens = final.usage?.completionTokens ?? outputTokens;
          yield final;
          return;
        }
        if (stop.aborted) {
          deadline.check();
          // The client went away or cancelled: end with what was generated.
          const final = processor.finish("cancelled");
          finalReason = "cancelled";
          yield final;
          return;
        }
      }
    } catch (err) {
      if (deadline.expired) {
        failure = deadline.error;
        throw failure;
      }
      if (signal.aborted && err === signal.reason) {
        // Cancelled while queued (or while starting): an empty "cancelled" end, as documented.
        finalReason = "cancelled";
        yield {
          tokenIds: [],
          text: "",
          finishReason: "cancelled",
          usage: { promptTokens: resolved?.promptTokenIds.length ?? 0, completionTokens: outputTokens },
        };
        return;
      }
      failure = err;
      throw err;
    } finally {
      deadline.clear();
      // The node still runs the sequence (stop string matched, consumer gone, failure here): stop it.
      if (node !== undefined && sequenceId >= 0 && !inbox.ended) node.abortSequence(sequenceId);
      const end = this.#now();
      // No final reason and no failure: the consumer stopped iterating (a cancellation).
      const code =
        finalReason === undefined
          ? failure === undefined
            ? Code.CANCELLED
            : ExpertMeshError.from(failure).code
          : undefined;
      this.#options.observer?.onRequestEnd({
        reason: finalReason ?? (code === Code.CANCELLED ? "cancelled" : "error"),
        code: code === Code.CANCELLED ? undefined : code,
        promptTokens: resolved?.promptTokenIds.length ?? 0,
        completionTokens: outputTokens,
        e2eSeconds: (end - arrival) / 1000,
        ttftSeconds: firstTokenAt === undefined ? undefined : (firstTokenAt - arrival) / 1000,
        tpotSeconds:
          firstTokenAt !== undefined && lastTokenAt !== undefined && outputTokens > 1
            ? (lastTokenAt - firstTokenAt) / 1000 / (outputTokens - 1)
            : undefined,
        queueSeconds: admittedAt === undefined ? undefined : (admittedAt - arrival) / 1000,
      });
      this.#active--;
      if (this.#active === 0) for (const wake of this.#idle.splice(0)) wake();
    }
  }
}

/** Nodes tried for one request when they refuse it before its first token. */
const MAX_ATTEMPTS = 3;

function isRefusal(end: SequenceEnd): boolean {
  return end.error?.code === Code.UNAVAILABLE && end.usage.completionTokens === 0;
}

/** A request's absolute deadline as an AbortSignal whose reason is DEADLINE_EXCEEDED. */
class DeadlineSignal {
  readonly #controller = new AbortController();
  readonly #deadline: number | undefined;
  readonly #now: () => number;
  readonly #timer: NodeJS.Timeout | undefined;
  readonly error = new ExpertMeshError(Code.DEADLINE_EXCEEDED, "deadline exceeded");

  constructor(deadline: number | undefined, now: () => number) {
    this.#deadline = deadline;
    this.#now = now;
    if (deadline !== undefined) {
      // setTimeout's limit is 2^31-1 ms; a deadline further away needs no timer.
      const ms = deadline - now();
      if (ms <= 2 ** 31 - 1) {
        this.#timer = setTimeout(() => this.#controller.abort(this.error), Math.max(0, ms));
        this.#timer.unref();
      }
    }
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get expired(): boolean {
    return this.#deadline !== undefined && (this.#controller.signal.aborted || this.#now() >= this.#deadline);
  }

  /** Milliseconds left for the node's own timer (at least 1 when there is a deadline); 0 = none. */
  remainingMs(): number {
    if (this.#deadline === undefined) return 0;
    return Math.min(2 ** 32 - 1, Math.max(1, Math.ceil(this.#deadline - this.#now())));
  }

  /** Throws DEADLINE_EXCEEDED when the deadline has passed. */
  check(): void {
    if (this.expired) throw this.error;
  }

  clear(): void {
    clearTimeout(this.#timer);
  }
}
