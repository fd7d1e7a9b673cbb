/**
 * Where sequences' MLA latent KV rows live. A row is one token of one layer:
 * `[kvLoraRank normalised latent | qkRopeHeadDim rotated k_pe]` (rowSize values).
 * The model writes the rows of new tokens and reads a sequence's whole context per layer;
 * how rows are laid out (contiguous, paged blocks) is the store's business.
 * Sequence ids are assigned by the store's owner (the engine's scheduler, or a test).
 */
export interface LatentKvStore {
  /** Values per token per layer: kvLoraRank + qkRopeHeadDim. */
  readonly rowSize: number;
  /**
   * Writes `rows` ([count, rowSize], count = rows.length / rowSize) at positions
   * [start, start + count) of sequence `seq` in `layer`. Capacity must already be reserved.
   */
  write(seq: number, layer: number, start: number, rows: Float32Array): void;
  /**
   * Copies positions [0, length) of `seq` in `layer` into `out` ([length, rowSize], contiguous,
   * at offset 0) and returns `out`.
   */
  read(seq: number, layer: number, length: number, out: Float32Array): Float32Array;
}
