/**
 * The simplest LatentKvStore: one growable contiguous buffer per (sequence, layer).
 * For single-process use and tests; the engine uses a paged store.
 */
import { ExpertMeshError, Code } from "@expertmesh/shared";
import type { LatentKvStore } from "./latent-kv-store.ts";

export interface ContiguousKvStoreOptions {
  numLayers: number;
  /** kvLoraRank + qkRopeHeadDim. */
  rowSize: number;
}

export class ContiguousKvStore implements LatentKvStore {
  readonly rowSize: number;
  readonly numLayers: number;
  /** seq → per layer [capacity, rowSize] */
  private readonly seqs = new Map<number, { capacity: number; layers: Float32Array[] }>();

  constructor(options: ContiguousKvStoreOptions) {
    this.rowSize = options.rowSize;
    this.numLayers = options.numLayers;
  }

  /** Makes room for positions [0, length) of `seq` (creating the sequence if new). */
  reserve(seq: number, length: number): void {
    const s = this.seqs.get(seq);
    if (s !== undefined && s.capacity >= length) return;
    const capacity = Math.max(length, (s?.capacity ?? 0) * 2, 16);
    const layers = Array.from({ length: this.numLayers }, (_, l) => {
      const buf = new Float32Array(capacity * this.rowSize);
      const old = s?.layers[l];
      if (old !== undefined) buf.set(old);
      return buf;
    });
    this.seqs.set(seq, { capacity, layers });
  }

  /** Drops a sequence's rows. */
  release(seq: number): void {
    this.seqs.delete(seq);
  }

  has(seq: number): boolean {
    return this.seqs.has(seq);
  }

  write(seq: number, layer: number, start: number, rows: Float32Array): void {
    const count = rows.length / this.rowSize;
    const buf = this.buffer(seq, layer, start + count);
    buf.set(rows, start * this.rowSize);
  }

  read(seq: number, layer: number, length: number, out: Float32Array): Float32Array {
    const buf = this.buffer(seq, layer, length);
    out.set(buf.subarray(0, length * this.rowSize));
    return out;
  }

  private buffer(seq: number, layer: number, end: number): Float32Array {
    const s = this.seqs.get(seq);
    if (s === undefined)
      throw new ExpertMeshError(Code.FAILED_PRECONDITION, `kv store: unknown sequence ${seq}`);
    if (end > s.capacity)
      throw new ExpertMeshError(
        Code.FAILED_PRECONDITION,
        `kv store: sequence ${seq} has room for ${s.capacity} positions, needs ${end}`,
      );
    const buf = s.layers[layer];
    if (buf === undefined) throw new ExpertMeshError(Code.INTERNAL, `kv store: no layer ${layer}`);
    return buf;
  }
}
