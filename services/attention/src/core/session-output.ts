/**
 * What the serve loop hands one router stream per engine step, in the core's words (the server
 * packs it into a ServeResponse), and what a sequence asks for when it is added.
 */
import type { SamplingOptions, TokenLogprob } from "@expertmesh/engine";
import type { ExpertMeshError } from "@expertmesh/shared";

/** One AddSequence, decoded. */
export interface SequenceRequest {
  /** Router-chosen id, unique among the stream's live sequences. */
  readonly sequenceId: number;
  /** The client's request id (logs only). */
  readonly requestId: string;
  readonly promptTokenIds: readonly number[];
  /** Engine sampling options (logprobs excluded: set from the two fields below). */
  readonly sampling: Omit<SamplingOptions, "logprobs">;
  /** Report the chosen token's logprob. */
  readonly logprobs: boolean;
  /** Report this many alternatives per token. */
  readonly topLogprobs: number;
  /** Relative deadline in ms; 0 = none. */
  readonly timeoutMs: number;
}

/** The token a sequence got in a step. */
export interface SequenceToken {
  readonly sequenceId: number;
  readonly tokenId: number;
  /** Present when the sequence asked for logprobs. */
  readonly logprob?: number;
  /** The asked-for alternatives, most likely first (empty when none were asked). */
  readonly top: readonly TokenLogprob[];
}

export type SequenceEndReason = "stop" | "length" | "cancelled" | "error";

/** The end of a sequence; the node holds nothing for it afterwards. */
export interface SequenceEnd {
  readonly sequenceId: number;
  readonly reason: SequenceEndReason;
  /** Set exactly when reason is "error". */
  readonly error?: ExpertMeshError;
  readonly promptTokens: number;
  readonly completionTokens: number;
}

/** Everything one stream gets from one step: tokens first, then the sequences that ended. */
export interface SessionOutput {
  readonly tokens: readonly SequenceToken[];
  readonly finishes: readonly SequenceEnd[];
}

/** Where a session's outputs go (the server's response queue). */
export interface SessionListener {
  output(output: SessionOutput): void;
  /** Every command was read and every sequence has ended: the stream may end with OK. */
  end(): void;
  /** The node can serve none of this stream's sequences any more. */
  fail(error: ExpertMeshError): void;
}
