/**
 * How one step is split for attention: sequences are grouped so that every group is B
 * sequences × the same number Tq of new tokens — all single-token (decode) sequences in one
 * group, each multi-token (prefill chunk) sequence in its own — and the layer graph runs once
 * per group. Rows are processed in "group order" (group 0's rows, then group 1's, …; within a
 * group [b, t]); `order` maps them back to the batch's rows.
 * Masks and the padded cached-context buffers are built once per step and reused by every layer.
 */
import type { LatentKvStore } from "../kv/latent-kv-store.ts";
import type { BufferPool } from "./buffer-pool.ts";

/** Additive mask value of a disallowed key: exp underflows to exactly 0. */
const MASKED = -1e30;

export interface StepSequence {
  seq: number;
  start: number;
  count: number;
  /** First row of this sequence in the batch. */
  row: number;
}

export interface AttentionGroup {
  /** Indices into the step's sequences. */
  members: number[];
  B: number;
  /** New tokens per member. */
  Tq: number;
  /** Cached positions per member (padded): the longest `start` of the group. */
  Sp: number;
  /** First row of the group in group order; it has B·Tq rows. */
  rowStart: number;
  /** [B, Tq·nh, Sp + Tq]: keys [0, Sp) are cached positions, [Sp, Sp + Tq) the new tokens. */
  mask: Float32Array;
  /** [B, Sp, D] cached rows, refilled per layer. */
  kPast: Float32Array;
}

export interface AttentionPlan {
  groups: AttentionGroup[];
  /** [T] batch row of each group-order row. */
  order: Int32Array;
  /** Whether group order is the batch order. */
  identity: boolean;
}

/** Plans the step; buffers come from `pool` (give them back with releaseAttention). */
export function planAttention(
  seqs: readonly StepSequence[],
  nh: number,
  D: number,
  pool: BufferPool,
): AttentionPlan {
  const memberLists: number[][] = [];
  const decode = seqs.flatMap((s, i) => (s.count === 1 ? [i] : []));
  if (decode.length > 0) memberLists.push(decode);
  seqs.forEach((s, i) => {
    if (s.count > 1) memberLists.push([i]);
  });
  memberLists.sort((a, b) => (a[0] as number) - (b[0] as number));

  const T = seqs.reduce((n, s) => n + s.count, 0);
  const order = new Int32Array(T);
  let rowStart = 0;
  const groups = memberLists.map((members) => {
    const ms = members.map((i) => seqs[i] as StepSequence);
    const B = ms.length;
    const Tq = (ms[0] as StepSequence).count;
    const Sp = Math.max(...ms.map((s) => s.start));
    const M = Tq * nh;
    const S = Sp + Tq;
    const mask = pool.acquire(B * M * S).fill(MASKED);
    ms.forEach((s, b) => {
      for (let t = 0; t < Tq; t++) {
        order[rowStart + b * Tq + t] = s.row + t;
        for (let h = 0; h < nh; h++) {
          const base = ((b * Tq + t) * nh + h) * S;
          mask.fill(0, base, base + s.start); // the sequence's cached positions
          mask.fill(0, base + Sp, base + Sp + t + 1); // new tokens up to this one (causal)
        }
      }
    });
    const g: AttentionGroup = { members, B, Tq, Sp, rowStart, mask, kPast: pool.acquire(B * Sp * D) };
    rowStart += B * Tq;
    return g;
  });
  return { groups, order, identity: order.every((r, i) => r === i) };
}

export function releaseAttention(plan: AttentionPlan, pool: BufferPool): void {
  for (const g of plan.groups) {
    pool.release(g.mask);
    pool.release(g.kPast);
  }
}

/**
 * Reads each member's cached positions [0, start) of `layer` into the group's padded context;
 * padding rows are zeroed (masked anyway, but must stay finite).
 */
export function fillPast(
  g: AttentionGroup,
  seqs: readonly StepSequence[],
  kv: LatentKvStore,
  layer: number,
  D: number,
): void {
  g.members.forEach((i, b) => {
    const s = seqs[i] as StepSequence;
    const dst = g.kPast.subarray(b * g.Sp * D, (b + 1) * g.Sp * D);
    if (s.start > 0) kv.read(s.seq, layer, s.start, dst.subarray(0, s.start * D));
    dst.fill(0, s.start * D);
  });
}

/** Writes the group's new KV rows ([B·Tq, D], group order) to the store. */
export function writeNew(
  g: AttentionGroup,
  seqs: readonly StepSequence[],
  kv: LatentKvStore,
  layer: number,
  rows: Float32Array,
  D: number,
): void {
  g.members.forEach((i, b) => {
    const s = seqs[i] as StepSequence;
    kv.write(s.seq, layer, s.start, rows.subarray(b * g.Tq * D, (b + 1) * g.Tq * D));
  });
}

/** Rows [T, width] in group order → batch order (or the same array when the order is the identity). */
export function toBatchOrder(plan: AttentionPlan, rows: Float32Array, width: number): Float32Array {
  if (plan.identity) return rows;
  const out = new Float32Array(rows.length);
  plan.order.forEach((r, i) => out.set(rows.subarray(i * width, (i + 1) * width), r * width));
  return out;
}
