/**
 * How one step's attention is batched: sequences are grouped into padded batches
 * [B, Tq·heads, S] for the attention-core graph — all single-token (decode) sequences in one
 * group, each multi-token (prefill chunk) sequence in its own — with an additive causal mask.
 * Masks and padded buffers are built once per step and reused by every layer.
 */
import type { LatentKvStore } from "../kv/latent-kv-store.ts";

/** Additive mask value of a disallowed key: exp underflows to exactly 0. */
const MASKED = -1e30;

export interface AttentionGroup {
  /** Indices into the step's sequences. */
  members: number[];
  B: number;
  /** Query rows per sequence (padded). */
  Tq: number;
  /** Keys per sequence (padded): the longest context. */
  S: number;
  /** [B, Tq·nh, S] */
  mask: Float32Array;
  /** [B, S, D] keys, refilled per layer. */
  k: Float32Array;
  /** [B, Tq·nh, D] queries, or null when the group's rows are a contiguous unpadded range of the step. */
  q: Float32Array | null;
  /** First step row of the group when q is null. */
  rowStart: number;
}

export interface StepSequence {
  seq: number;
  start: number;
  count: number;
  /** First row of this sequence in the step. */
  row: number;
}

export function planAttention(seqs: readonly StepSequence[], nh: number, D: number): AttentionGroup[] {
  const groups: number[][] = [];
  const decode = seqs.flatMap((s, i) => (s.count === 1 ? [i] : []));
  if (decode.length > 0) groups.push(decode);
  seqs.forEach((s, i) => {
    if (s.count > 1) groups.push([i]);
  });
  groups.sort((a, b) => (a[0] as number) - (b[0] as number));
  return groups.map((members) => {
    const ms = members.map((i) => seqs[i] as StepSequence);
    const B = ms.length;
    const Tq = Math.max(...ms.map((s) => s.count));
    const S = Math.max(...ms.map((s) => s.start + s.count));
    const M = Tq * nh;
    const mask = new Float32Array(B * M * S).fill(MASKED);
    ms.forEach((s, b) => {
      for (let i = 0; i < s.count; i++) {
        // query at position start + i sees keys [0, start + i]
        for (let h = 0; h < nh; h++) mask.fill(0, ((b * Tq + i) * nh + h) * S, ((b * Tq + i) * nh + h) * S + s.start + i + 1);
      }
    });
    let contiguous = ms.every((s) => s.count === Tq);
    for (let b = 1; b < B; b++) contiguous &&= (ms[b] as StepSequence).row === (ms[b - 1] as StepSequence).row + Tq;
    const first = ms[0] as StepSequence;
    return {
      members,
      B,
      Tq,
      S,
      mask,
      k: new Float32Array(B * S * D),
      q: contiguous ? null : new Float32Array(B * M * D),
      rowStart: first.row,
    };
  });
}

/** Reads each member's context [0, start + count) of `layer` into the group's padded keys. */
export function fillKeys(g: AttentionGroup, seqs: readonly StepSequence[], kv: LatentKvStore, layer: number, D: number): void {
  g.members.forEach((i, b) => {
    const s = seqs[i] as StepSequence;
    const len = s.start + s.count;
    kv.read(s.seq, layer, len, g.k.subarray(b * g.S * D, (b * g.S + len) * D));
  });
}

/** Step queries [T, nh, D] → the group's padded queries (or a view when contiguous). */
export function groupQueries(g: AttentionGroup, seqs: readonly StepSequence[], q: Float32Array, nh: number, D: number): Float32Array {
  const rowSize = nh * D;
  if (g.q === null) return q.subarray(g.rowStart * rowSize, (g.rowStart + g.B * g.Tq) * rowSize);
  const out = g.q;
  g.members.forEach((i, b) => {
    const s = seqs[i] as StepSequence;
    out.set(q.subarray(s.row * rowSize, (s.row + s.count) * rowSize), b * g.Tq * rowSize);
  });
  return out;
}

/** The group's output [B, Tq·nh, D] → the step's rows [T, nh, D]. */
export function scatterOutput(g: AttentionGroup, seqs: readonly StepSequence[], o: Float32Array, out: Float32Array, nh: number, D: number): void {
  const rowSize = nh * D;
  g.members.forEach((i, b) => {
    const s = seqs[i] as StepSequence;
    out.set(o.subarray(b * g.Tq * rowSize, (b * g.Tq + s.count) * rowSize), s.row * rowSize);
  });
}
