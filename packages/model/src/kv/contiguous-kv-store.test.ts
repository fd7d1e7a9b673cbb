import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ContiguousKvStore } from "./contiguous-kv-store.ts";

describe("ContiguousKvStore", () => {
  it("keeps rows across growth, per layer and sequence", () => {
    const kv = new ContiguousKvStore({ numLayers: 2, rowSize: 3 });
    kv.reserve(7, 2);
    kv.write(7, 1, 0, Float32Array.of(1, 2, 3, 4, 5, 6));
    kv.reserve(7, 100); // grows, keeping what was written
    kv.write(7, 1, 2, Float32Array.of(7, 8, 9));
    assert.deepEqual(Array.from(kv.read(7, 1, 3, new Float32Array(9))), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual(Array.from(kv.read(7, 0, 1, new Float32Array(3))), [0, 0, 0]);
    kv.release(7);
    assert.equal(kv.has(7), false);
  });

  it("rejects unknown sequences and writes beyond the reserved capacity", () => {
    const kv = new ContiguousKvStore({ numLayers: 1, rowSize: 2 });
    assert.throws(() => kv.write(1, 0, 0, new Float32Array(2)), /unknown sequence 1/);
    kv.reserve(1, 16);
    assert.throws(() => kv.write(1, 0, 16, new Float32Array(2)), /room for 16 positions/);
  });
});
