/**
 * What one model step consumes and produces. A step holds several sequences (continuous
 * batching): some prefill a chunk of prompt tokens, some decode one token. Rows of a step are
 * every sequence's new tokens, in batch order.
 */
import type { RoutingResult } from "./routing.ts";

export type LogitsWanted = "all" | "last" | "none";

export interface SequenceChunk {
  /** The sequence's id in the LatentKvStore (capacity for start + tokens.length reserved). */
  seq: number;
  /** New tokens, at positions [start, start + tokens.length). */
  tokens: Int32Array;
  /** Position of tokens[0]; positions [0, start) must already be in the KV store. */
  start: number;
  /** Which of the new positions need logits. */
  logits: LogitsWanted;
}

export interface ForwardBatch {
  sequences: readonly SequenceChunk[];
}

export interface ForwardOptions {
  /**
   * "all": keep per-layer hidden states, router inputs and routing decisions (inspect);
   * "routing": only the MoE layers' router inputs and routing (load accounting). Default none.
   */
  capture?: "all" | "routing";
}

export interface MoeLayerCapture {
  layer: number;
  /** [rows, hidden] router input (post_attention_layernorm output). */
  gateInput: Float32Array;
  routing: RoutingResult;
}

export interface ForwardCapture {
  /**
   * [layers + 1] × [rows, hidden]: 0 = token embeddings, i + 1 = residual stream after layer i
   * (empty unless capture is "all").
   */
  hidden: Float32Array[];
  moe: MoeLayerCapture[];
}

export interface ForwardResult {
  /** [logitRows, vocab]: the wanted positions of each sequence, in batch order. */
  logits: Float32Array;
  /** [sequences + 1]: sequence i's logits are rows [logitOffsets[i], logitOffsets[i + 1]). */
  logitOffsets: Int32Array;
  capture?: ForwardCapture;
}
