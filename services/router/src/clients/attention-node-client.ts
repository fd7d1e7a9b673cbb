/**
 * One attention node, seen from the router: ONE long-lived AttentionService.Serve stream that
 * multiplexes every sequence the router runs there (router-allocated sequence ids; AddSequence and
 * AbortSequences go out on it, packed step reports come back), plus a GetLoad poll that feeds
 * admission and notices a node coming back. When the stream fails, every sequence on it ends with
 * UNAVAILABLE and the node takes no new work until a later poll succeeds and a new stream opens.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { AttentionService, FinishReason as WireFinishReason, MemberStatus } from "@expertmesh/proto";
import type {
  GetLoadResponse,
  ServeRequestSchema,
  ServeResponse,
  ServeResponseSchema,
} from "@expertmesh/proto";
import { Code, ExpertMeshError, createGrpcChannel, createGrpcClient } from "@expertmesh/shared";
import type { BidiStream, GrpcChannel, GrpcClient, Logger } from "@expertmesh/shared";
import type {
  AttentionNodeHandle,
  NodeLoad,
  SequenceEnd,
  SequenceListener,
  SequenceSpec,
  SequenceToken,
} from "../core/attention-pool.ts";
import type { FinishReason } from "../core/generation.ts";
import { isServing } from "./node-health.ts";

export interface AttentionNodeClientOptions {
  readonly id: string;
  /** host:port of its AttentionService. */
  readonly address: string;
  /** GetLoad period; also how soon a failed node is retried. */
  readonly pollIntervalMs: number;
  readonly logger: Logger;
  /** Called when a sequence ends or the node comes or goes (admission may proceed). */
  readonly onCapacityChange: () => void;
}

/** A node's state for GetClusterState. */
export interface AttentionNodeState {
  readonly id: string;
  readonly address: string;
  readonly status: MemberStatus;
  readonly load: GetLoadResponse | undefined;
}

type ServeStream = BidiStream<typeof ServeRequestSchema, typeof ServeResponseSchema>;
type ServeRequestInit = MessageInitShape<typeof ServeRequestSchema>;

const FINISH_REASON: Readonly<Record<number, FinishReason>> = {
  [WireFinishReason.STOP]: "stop",
  [WireFinishReason.LENGTH]: "length",
  [WireFinishReason.CANCELLED]: "cancelled",
  [WireFinishReason.ERROR]: "error",
};

export class AttentionNodeClient implements AttentionNodeHandle {
  readonly id: string;
  readonly address: string;
  readonly #options: AttentionNodeClientOptions;
  readonly #channel: GrpcChannel;
  readonly #client: GrpcClient<typeof AttentionService>;
  readonly #live = new Map<number, SequenceListener>();
  #stream: ServeStream | undefined;
  /** Resolves when the current stream's reader has finished. */
  #streamDone: Promise<void> = Promise.resolve();
  #lastLoad: GetLoadResponse | undefined;
  #reachable = false;
  /** Its gRPC health says SERVING (false while it drains: running sequences go on, no new ones). */
  #accepting = false;
  #nextSequenceId = 1;
  #timer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;
  #closing = false;
  #servingWaiters: (() => void)[] = [];

  constructor(options: AttentionNodeClientOptions) {
    this.id = options.id;
    this.address = options.address;
    this.#options = options;
    this.#channel = createGrpcChannel(options.address);
    this.#client = createGrpcClient(AttentionService, this.#channel);
  }

  /** Takes new sequences: its last GetLoad succeeded, its health is SERVING and its Serve stream is open. */
  get serving(): boolean {
    return this.#reachable && this.#accepting && this.#stream !== undefined && !this.#closing;
  }

  /** Starts polling GetLoad (the first poll opens the stream). */
  start(): void {
    if (this.#timer !== undefined) return;
    void this.poll();
    this.#timer = setInterval(() => void this.poll(), this.#options.pollIntervalMs);
    this.#timer.unref();
  }

  /** One GetLoad now (polls never overlap); opens the stream when the node is reachable. */
  poll(): Promise<void> {
    this.#polling ??= this.#pollOnce().finally(() => (this.#polling = undefined));
    return this.#polling;
  }

  /** Resolves once the node is serving; rejects with UNAVAILABLE after `timeoutMs`. */
  async waitUntilServing(timeoutMs: number): Promise<void> {
    if (this.serving) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#servingWaiters = this.#servingWaiters.filter((w) => w !== done);
        reject(
          new ExpertMeshError(
            Code.UNAVAILABLE,
            `attention node ${this.id} (${this.address}) not serving within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.#servingWaiters.push(done);
    });
  }

  load(): NodeLoad {
    const l = this.#lastLoad;
    return {
      id: this.id,
      serving: this.serving,
      inFlight: this.#live.size,
      running: l?.running ?? 0,
      waiting: l?.waiting ?? 0,
      freeKvBlocks: l?.freeKvBlocks ?? 0,
      totalKvBlocks: l?.totalKvBlocks ?? 0,
      kvBlockSize: l?.kvBlockSize ?? 1,
      maxRunning: l?.maxRunning ?? 0,
    };
  }

  state(): AttentionNodeState {
    const status = this.serving
      ? MemberStatus.SERVING
      : this.#closing || (this.#reachable && !this.#accepting)
        ? MemberStatus.DRAINING
        : this.#lastLoad === undefined && !this.#reachable
          ? MemberStatus.STARTING
          : MemberStatus.UNAVAILABLE;
    return { id: this.id, address: this.address, status, load: this.#lastLoad };
  }

  startSequence(spec: SequenceSpec, listener: SequenceListener): number {
    const stream = this.#stream;
    if (stream === undefined || !this.serving) {
      throw new ExpertMeshError(Code.UNAVAILABLE, `attention node ${this.id} is not serving`);
    }
    const sequenceId = this.#allocateSequenceId();
    const s = spec.sampling;
    this.#live.set(sequenceId, listener);
    this.#send(stream, {
      command: {
        case: "addSequence",
        value: {
          sequenceId,
          requestId: spec.requestId,
          promptTokenIds: [...spec.promptTokenIds],
          sampling: {
            temperature: s.temperature,
            topP: s.topP,
            topK: s.topK,
            ...(s.minP > 0 ? { minP: s.minP } : {}),
            ...(s.seed === undefined ? {} : { seed: s.seed }),
            maxTokens: s.maxTokens,
            stopTokenIds: [...s.stopTokenIds],
            ignoreEos: s.ignoreEos,
          },
          logprobs: spec.logprobs,
          topLogprobs: spec.topLogprobs,
          timeoutMs: spec.timeoutMs,
        },
      },
    });
    return sequenceId;
  }

  abortSequence(sequenceId: number): void {
    const stream = this.#stream;
    if (stream === undefined || !this.#live.has(sequenceId)) return;
    this.#send(stream, { command: { case: "abortSequences", value: { sequenceIds: [sequenceId] } } });
  }

  /**
   * Stops polling and half-closes the stream: the node finishes the sequences it has, then ends
   * the stream. After `signal` aborts, the stream is cancelled (the node frees what it held).
   */
  async close(signal?: AbortSignal): Promise<void> {
    this.#closing = true;
    clearInterval(this.#timer);
    const stream = this.#stream;
    if (stream !== undefined) {
      stream.end();
      const cancel = (): void => stream.cancel();
      if (signal?.aborted === true) cancel();
      signal?.addEventListener("abort", cancel, { once: true });
      await this.#streamDone;
      signal?.removeEventListener("abort", cancel);
    }
    await this.#polling;
    this.#channel.close();
  }

  async #pollOnce(): Promise<void> {
    if (this.#closing) return;
    const timeoutMs = Math.min(10_000, Math.max(1_000, this.#options.pollIntervalMs));
    const wasServing = this.serving;
    try {
      const [load, accepting] = await Promise.all([
        this.#client.getLoad({}, { timeoutMs }),
        isServing(this.#channel, AttentionService.typeName, timeoutMs),
      ]);
      this.#lastLoad = load;
      if (!this.#reachable) {
        this.#options.logger.info({ node: this.id, address: this.address }, "attention node reachable");
      }
      if (this.#accepting && !accepting) {
        this.#options.logger.info(
          { node: this.id },
          "attention node not SERVING (draining?): no new sequences",
        );
      }
      this.#reachable = true;
      this.#accepting = accepting;
      if (this.#stream === undefined && accepting && !this.#closing) this.#openStream();
    } catch (err) {
      if (this.#reachable || this.#lastLoad === undefined) {
        this.#options.logger.warn(
          { node: this.id, address: this.address, err: ExpertMeshError.from(err).message },
          "attention node unreachable",
        );
      }
      this.#reachable = false;
    }
    if (this.serving) for (const wake of this.#servingWaiters.splice(0)) wake();
    // A load change alone does not free a slot (slots are the router's in-flight count), but a
    // node that came or went does.
    if (this.serving !== wasServing || this.serving) this.#options.onCapacityChange();
  }

  #openStream(): void {
    const stream = this.#client.serve();
    this.#stream = stream;
    this.#options.logger.info({ node: this.id, address: this.address }, "serve stream opened");
    this.#streamDone = this.#read(stream);
  }

  async #read(stream: ServeStream): Promise<void> {
    let error: ExpertMeshError;
    try {
      for await (const response of stream) this.#deliver(response);
      error = new ExpertMeshError(Code.UNAVAILABLE, `attention node ${this.id} ended its stream`);
    } catch (err) {
      const cause = ExpertMeshError.from(err);
      error = new ExpertMeshError(Code.UNAVAILABLE, `attention node ${this.id} failed: ${cause.message}`, {
        details: { attention_node: this.id },
        cause: err,
      });
    }
    if (this.#stream === stream) this.#stream = undefined;
    if (this.#live.size > 0 || !this.#closing) {
      this.#options.logger.warn(
        { node: this.id, address: this.address, live: this.#live.size, err: error.message },
        "serve stream ended; its sequences fail with UNAVAILABLE",
      );
    }
    const lost = [...this.#live.values()];
    this.#live.clear();
    const end: SequenceEnd = { reason: "error", usage: { promptTokens: 0, completionTokens: 0 }, error };
    for (const listener of lost) listener.onEnd(end);
    this.#options.onCapacityChange();
  }

  /** One step report: packed parallel arrays → tokens per sequence, then the finishes. */
  #deliver(r: ServeResponse): void {
    const n = r.sequenceIds.length;
    const hasLogprobs = r.logprobs.length === n;
    const hasTop = r.topCounts.length === n;
    const bySequence = new Map<number, SequenceToken[]>();
    let topAt = 0;
    for (let i = 0; i < n; i++) {
      const count = hasTop ? (r.topCounts[i] as number) : 0;
      const top: { tokenId: number; logprob: number }[] = [];
      for (let j = 0; j < count; j++) {
        top.push({
          tokenId: r.topTokenIds[topAt + j] as number,
          logprob: r.topLogprobs[topAt + j] as number,
        });
      }
      topAt += count;
      const sequenceId = r.sequenceIds[i] as number;
      let tokens = bySequence.get(sequenceId);
      if (tokens === undefined) bySequence.set(sequenceId, (tokens = []));
      tokens.push({
        tokenId: r.tokenIds[i] as number,
        logprob: hasLogprobs ? r.logprobs[i] : undefined,
        top,
      });
    }
    for (const [sequenceId, tokens] of bySequence) this.#live.get(sequenceId)?.onTokens(tokens);
    for (const f of r.finishes) {
      const listener = this.#live.get(f.sequenceId);
      if (listener === undefined) continue;
      this.#live.delete(f.sequenceId);
      const usage = {
        promptTokens: f.usage?.promptTokens ?? 0,
        completionTokens: f.usage?.completionTokens ?? 0,
      };
      const reason = FINISH_REASON[f.finishReason] ?? "error";
      // Refused before its first token (the node drains or its engine died): take no more
      // sequences there until a poll finds it SERVING again.
      if (
        reason === "error" &&
        f.error?.code === Code.UNAVAILABLE &&
        (f.usage?.completionTokens ?? 0) === 0
      ) {
        this.#accepting = false;
      }
      listener.onEnd(
        reason === "error"
          ? {
              reason,
              usage,
              error:
                f.error === undefined
                  ? new ExpertMeshError(Code.INTERNAL, `sequence failed on attention node ${this.id}`)
                  : new ExpertMeshError(f.error.code, f.error.message, { details: { ...f.error.details } }),
            }
          : { reason, usage },
      );
    }
    if (r.finishes.length > 0) this.#options.onCapacityChange();
  }

  #send(stream: ServeStream, request: ServeRequestInit): void {
    try {
      stream.send(request);
    } catch (err) {
      // Sending after the stream ended: the reader fails the live sequences (this one included).
      this.#options.logger.debug({ node: this.id, err }, "send on an ended serve stream");
    }
  }

  /** The next uint32 id not live on this stream (ids may be reused after their finish). */
  #allocateSequenceId(): number {
    for (;;) {
      const id = this.#nextSequenceId;
      this.#nextSequenceId = (this.#nextSequenceId + 1) >>> 0;
      if (!this.#live.has(id)) return id;
    }
  }
}
