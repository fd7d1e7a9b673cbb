import type { LatentKvStore } from "@expertmesh/model";
import { Code, ExpertMeshError, invalidArgument } from "@expertmesh/shared";

export interface KvBlockPoolOptions {
  /** Layers of the model (each has its own slab). */
  numLayers: number;
  /** Values per token per layer: kvLoraRank + qkRopeHeadDim. */
  rowSize: number;
  /** Tokens per block (vLLM's default is 16). */
  blockSize?: number;
  /** Exactly this many blocks; or derive the count from `memoryBytes`. */
  numBlocks?: number;
  /** Memory budget for the cache in bytes; the pool takes as many whole blocks as fit. */
  memoryBytes?: number;
}

/** What the scheduler needs from the cache: block accounting, no rows. */
export interface KvBlockAllocator {
  readonly blockSize: number;
  readonly numBlocks: number;
  readonly freeBlocks: number;
  /** Blocks `seq` still needs so that it can hold `tokens` tokens (0 when it already can). */
  blocksNeeded(seq: number, tokens: number): number;
  /** Reserves room for `tokens` tokens of `seq`; false (and nothing reserved) when blocks run out. */
  ensureCapacity(seq: number, tokens: number): boolean;
  /** Returns every block of `seq` to the pool. */
  free(seq: number): void;
}

const DEFAULT_BLOCK_SIZE = 16;

/**
 * The paged MLA latent KV cache (vLLM's block pool + block tables). Storage is one Float32Array
 * slab per layer, `[numBlocks, blockSize, rowSize]`; a sequence owns a list of block ids (its
 * block table) and token position p lives in block `table[p / blockSize]`, slot
 * `p % blockSize`. Blocks are allocated whole and only on demand, so memory follows live tokens.
 */
export class KvBlockPool implements LatentKvStore, KvBlockAllocator {
  readonly numLayers: number;
  readonly rowSize: number;
  readonly blockSize: number;
  readonly numBlocks: number;
  /** One slab per layer: [numBlocks, blockSize, rowSize]. */
  private readonly slabs: Float32Array[];
  /** Free block ids as a stack: [numBlocks], the first `freeCount` entries are free. */
  private readonly freeStack: Int32Array;
  private freeCount: number;
  private readonly tables = new Map<number, number[]>();

  constructor(options: KvBlockPoolOptions) {
    const { numLayers, rowSize } = options;
    const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
    if (!Number.isInteger(numLayers) || numLayers < 1)
      throw invalidArgument("numLayers", "must be a positive integer");
    if (!Number.isInteger(rowSize) || rowSize < 1)
      throw invalidArgument("rowSize", "must be a positive integer");
    if (!Number.isInteger(blockSize) || blockSize < 1)
      throw invalidArgument("blockSize", "must be a positive integer");
    const blockBytes = KvBlockPool.blockBytes(numLayers, rowSize, blockSize);
    let numBlocks: number;
    if (options.numBlocks !== undefined) {
      if (options.memoryBytes !== undefined)
        throw invalidArgument("numBlocks", "give numBlocks or memoryBytes, not both");
      numBlocks = options.numBlocks;
    } else if (options.memoryBytes !== undefined) {
      if (!(options.memoryBytes >= 0)) throw invalidArgument("memoryBytes", "must be a non-negative number");
      numBlocks = Math.floor(options.memoryBytes / blockBytes);
    } else {
      throw invalidArgument("numBlocks", "give numBlocks or memoryBytes");
    }
    if (!Number.isInteger(numBlocks) || numBlocks < 1) {
      throw new ExpertMeshError(
        Code.INVALID_ARGUMENT,
        `KV cache too small: ${numBlocks} blocks (one block is ${blockBytes} bytes: ${blockSize} tokens × ${numLayers} layers × ${rowSize} values × 4)`,
      );
    }
    this.numLayers = numLayers;
    this.rowSize = rowSize;
    this.blockSize = blockSize;
    this.numBlocks = numBlocks;
    const slabLength = numBlocks * blockSize * rowSize;
    this.slabs = Array.from({ length: numLayers }, () => new Float32Array(slabLength));
    this.freeStack = new Int32Array(numBlocks);
    // Lowest ids on top of the stack: allocation order is deterministic.
    for (let i = 0; i < numBlocks; i++) this.freeStack[i] = numBlocks - 1 - i;
    this.freeCount = numBlocks;
  }

  /** Bytes one block takes across all layers. */
  static blockBytes(numLayers: number, rowSize: number, blockSize: number): number {
    return blockSize * numLayers * rowSize * Float32Array.BYTES_PER_ELEMENT;
  }

  get freeBlocks(): number {
    return this.freeCount;
  }

  get usedBlocks(): number {
    return this.numBlocks - this.freeCount;
  }

  /** Sequences that currently hold blocks. */
  get numSequences(): number {
    return this.tables.size;
  }

  /** Bytes held by the storage typed arrays (their byteLength, not a formula). */
  allocatedBytes(): number {
    let bytes = 0;
    for (const slab of this.slabs) bytes += slab.byteLength;
    return bytes;
  }

  /** Tokens `seq` can hold without new blocks. */
  capacity(seq: number): number {
    return (this.tables.get(seq)?.length ?? 0) * this.blockSize;
  }

  /** A copy of the block ids of `seq`, in position order. */
  blockTable(seq: number): number[] {
    return [...(this.tables.get(seq) ?? [])];
  }

  blocksNeeded(seq: number, tokens: number): number {
    const have = this.tables.get(seq)?.length ?? 0;
    return Math.max(0, Math.ceil(tokens / this.blockSize) - have);
  }

  ensureCapacity(seq: number, tokens: number): boolean {
    const need = this.blocksNeeded(seq, tokens);
    if (need === 0) return true;
    if (need > this.freeCount) return false;
    let table = this.tables.get(seq);
    if (table === undefined) {
      table = [];
      this.tables.set(seq, table);
    }
    for (let i = 0; i < need; i++) table.push(this.freeStack[--this.freeCount]!);
    return true;
  }

  /** Alias of `ensureCapacity` in the words of vLLM's allocate_slots. */
  allocate(seq: number, tokens: number): boolean {
    return this.ensureCapacity(seq, tokens);
  }

  free(seq: number): void {
    const table = this.tables.get(seq);
    if (table === undefined) return;
    // Push in reverse so the sequence's first block is reused first.
    for (let i = table.length - 1; i >= 0; i--) this.freeStack[this.freeCount++] = table[i]!;
    this.tables.delete(seq);
  }

  write(seq: number, layer: number, start: number, rows: Float32Array): void {
    const { rowSize, blockSize } = this;
    const count = rows.length / rowSize;
    if (!Number.isInteger(count))
      throw invalidArgument("rows", `length ${rows.length} is not a multiple of rowSize ${rowSize}`);
    const table = this.checkedTable(seq, start + count);
    const slab = this.slab(layer);
    let done = 0;
    while (done < count) {
      const pos = start + done;
      const slot = pos % blockSize;
      const n = Math.min(blockSize - slot, count - done);
      const dst = (table[Math.floor(pos / blockSize)]! * blockSize + slot) * rowSize;
      slab.set(rows.subarray(done * rowSize, (done + n) * rowSize), dst);
      done += n;
    }
  }

  read(seq: number, layer: number, length: number, out: Float32Array): Float32Array {
    const { rowSize, blockSize } = this;
    if (out.length < length * rowSize)
      throw invalidArgument("out", `holds ${out.length} values, needs ${length * rowSize}`);
    const table = this.checkedTable(seq, length);
    const slab = this.slab(layer);
    for (let b = 0, pos = 0; pos < length; b++, pos += blockSize) {
      const n = Math.min(blockSize, length - pos);
      const src = table[b]! * blockSize * rowSize;
      out.set(slab.subarray(src, src + n * rowSize), pos * rowSize);
    }
    return out;
  }

  private slab(layer: number): Float32Array {
    const slab = this.slabs[layer];
    if (slab === undefined) throw invalidArgument("layer", `${layer} is outside [0, ${this.numLayers})`);
    return slab;
  }

  private checkedTable(seq: number, tokens: number): number[] {
    const table = this.tables.get(seq);
    const have = (table?.length ?? 0) * this.blockSize;
    if (table === undefined || tokens > have) {
      throw new ExpertMeshError(
        Code.FAILED_PRECONDITION,
        `KV sequence ${seq}: positions up to ${tokens} requested but only ${have} reserved`,
      );
    }
    return table;
  }
}
