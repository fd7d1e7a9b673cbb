/**
 * What the router's generation core needs from the attention nodes, in its own words. The gRPC
 * implementation (one Serve stream per node) is clients/attention-node-client.ts; the core never
 * sees a wire message.
 */
import type { ExpertMeshError } from "@expertmesh/shared";
import type { FinishReason, GenerationUsage } from "./generation.ts";
import type { ResolvedSampling } from "./validate-request.ts";

/** One generated token as the node reported it. */
export interface SequenceToken {
  readonly tokenId: number;
  /** Present when the sequence asked for logprobs. */
  readonly logprob: number | undefined;
  /** Alternatives, most likely first (empty when none were asked). */
  readonly top: readonly { readonly tokenId: number; readonly logprob: number }[];
}

/** The end of a sequence on its node (after it the node holds nothing for it). */
export interface SequenceEnd {
  readonly reason: FinishReason;
  readonly usage: GenerationUsage;
  /** Set exactly when reason is "error": the node's status (or UNAVAILABLE when its stream broke). */
  readonly error?: ExpertMeshError;
}

/** Receives one sequence's outputs, in order; `onEnd` comes exactly once and last. */
export interface SequenceListener {
  onTokens(tokens: readonly SequenceToken[]): void;
  onEnd(end: SequenceEnd): void;
}

/** One sequence to start on a node. */
export interface SequenceSpec {
  readonly requestId: string;
  readonly promptTokenIds: readonly number[];
  readonly sampling: ResolvedSampling;
  readonly logprobs: boolean;
  readonly topLogprobs: number;
  /** Milliseconds left until the deadline; 0 = none. */
  readonly timeoutMs: number;
}

/** A node's load as the router sees it: its last GetLoad, and the router's own in-flight count. */
export interface NodeLoad {
  readonly id: string;
  /** Answered its last GetLoad and has an open Serve stream. */
  readonly serving: boolean;
  /** Sequences this router has started there and not yet seen end. */
  readonly inFlight: number;
  /** From the node's last GetLoad (0 before the first). */
  readonly running: number;
  readonly waiting: number;
  readonly freeKvBlocks: number;
  readonly totalKvBlocks: number;
  readonly kvBlockSize: number;
  readonly maxRunning: number;
}

export interface AttentionNodeHandle {
  readonly id: string;
  load(): NodeLoad;
  /** Sends the sequence to the node (synchronously queued on its stream); returns its sequence id. */
  startSequence(spec: SequenceSpec, listener: SequenceListener): number;
  /** Asks the node to stop the sequence; its listener still gets the (cancelled) end. */
  abortSequence(sequenceId: number): void;
}

export interface AttentionPool {
  readonly nodes: readonly AttentionNodeHandle[];
  /** Calls `listener` whenever capacity may have changed (a sequence ended, a node came or went). */
  onCapacityChange(listener: () => void): void;
}
