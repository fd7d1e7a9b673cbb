import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ExpertMeshError } from "@expertmesh/shared";
import { KvBlockPool } from "../src/kv-block-pool.ts";

describe("KvBlockPool", () => {
  it("allocates exactly blocks × blockSize × layers × rowSize × 4 bytes, as the typed arrays report", () => {
    // Bench-model shape: 6 layers, kv_lora 128 + rope 16.
    const pool = new KvBlockPool({ numLayers: 6, rowSize: 144, blockSize: 16, numBlocks: 37 });
    assert.equal(pool.allocatedBytes(), 37 * 16 * 6 * 144 * 4);
    // From a budget: whole blocks only, never above the budget.
    const blockBytes = 16 * 6 * 144 * 4;
    const fromBudget = new KvBlockPool({
      numLayers: 6,
      rowSize: 144,
      blockSize: 16,
      memoryBytes: 10 * blockBytes + blockBytes - 1,
    });
    assert.equal(fromBudget.numBlocks, 10);
    assert.equal(fromBudget.allocatedBytes(), 10 * blockBytes);
    // Cross-check against the process: allocating a big pool grows external memory by that much.
    const before = process.memoryUsage().arrayBuffers;
    const big = new KvBlockPool({ numLayers: 4, rowSize: 40, blockSize: 16, numBlocks: 4096 });
    const grown = process.memoryUsage().arrayBuffers - before;
    assert.equal(big.allocatedBytes(), 4096 * 16 * 4 * 40 * 4);
    assert.ok(grown >= big.allocatedBytes(), `arrayBuffers grew by ${grown}`);
  });

  it("rejects a budget smaller than one block", () => {
    assert.throws(
      () => new KvBlockPool({ numLayers: 2, rowSize: 8, blockSize: 4, memoryBytes: 100 }),
      ExpertMeshError,
    );
  });

  it("fails allocation cleanly when full and reserves nothing on failure", () => {
    const pool = new KvBlockPool({ numLayers: 1, rowSize: 2, blockSize: 4, numBlocks: 5 });
    assert.equal(pool.ensureCapacity(1, 9), true); // 3 blocks
    assert.equal(pool.freeBlocks, 2);
    assert.equal(pool.ensureCapacity(2, 12), false); // needs 3
    assert.equal(pool.freeBlocks, 2);
    assert.equal(pool.capacity(2), 0);
    assert.equal(pool.ensureCapacity(1, 12), true); // grows within its last block's successor
    assert.equal(pool.ensureCapacity(1, 12), true); // already there: no new block
    assert.equal(pool.usedBlocks, 3);
    assert.equal(pool.ensureCapacity(2, 8), true);
    assert.equal(pool.freeBlocks, 0);
    assert.equal(pool.ensureCapacity(3, 1), false);
    pool.free(1);
    pool.free(2);
    pool.free(2); // idempotent
    assert.equal(pool.freeBlocks, 5);
    assert.equal(pool.numSequences, 0);
  });

  it("writes and reads rows across block boundaries, per layer, per sequence", () => {
    const rowSize = 3;
    const pool = new KvBlockPool({ numLayers: 2, rowSize, blockSize: 4, numBlocks: 16 });
    const value = (seq: number, layer: number, pos: number, c: number): number =>
      seq * 10000 + layer * 1000 + pos * 10 + c;
    const rows = (seq: number, layer: number, start: number, n: number): Float32Array => {
      const r = new Float32Array(n * rowSize);
      for (let i = 0; i < n; i++)
        for (let c = 0; c < rowSize; c++) r[i * rowSize + c] = value(seq, layer, start + i, c);
      return r;
    };
    // Interleave two sequences so their blocks alternate in the slab.
    for (const [start, n] of [
      [0, 3],
      [3, 6],
      [9, 1],
      [10, 7],
    ] as const) {
      for (const seq of [7, 8]) {
        assert.ok(pool.ensureCapacity(seq, start + n));
        for (let layer = 0; layer < 2; layer++) pool.write(seq, layer, start, rows(seq, layer, start, n));
      }
    }
    assert.notDeepEqual(pool.blockTable(7), [0, 1, 2, 3, 4]); // not contiguous: interleaved
    for (const seq of [7, 8]) {
      for (let layer = 0; layer < 2; layer++) {
        const out = pool.read(seq, layer, 17, new Float32Array(17 * rowSize));
        assert.deepEqual(out, rows(seq, layer, 0, 17));
        const prefix = pool.read(seq, layer, 5, new Float32Array(5 * rowSize));
        assert.deepEqual(prefix, rows(seq, layer, 0, 5));
      }
    }
  });

  it("refuses to write or read beyond a sequence's reservation", () => {
    const pool = new KvBlockPool({ numLayers: 1, rowSize: 2, blockSize: 4, numBlocks: 4 });
    assert.ok(pool.ensureCapacity(0, 4));
    assert.throws(() => pool.write(0, 0, 3, new Float32Array(4)), /reserved/);
    assert.throws(() => pool.read(1, 0, 1, new Float32Array(2)), /reserved/);
    assert.throws(() => pool.write(0, 1, 0, new Float32Array(2)), /layer/);
  });
});
