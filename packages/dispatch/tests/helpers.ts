/** Shared by the dispatch tests. */
import assert from "node:assert/strict";
import { Code, ExpertMeshError } from "@expertmesh/shared";

/** mulberry32: a small seeded PRNG so random inputs are reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Asserts `fn` throws an ExpertMeshError with `code` (and `field` in its details when given). */
export function throwsCode(fn: () => unknown, code: Code, field?: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ExpertMeshError, `expected an ExpertMeshError, got ${String(e)}`);
    assert.equal(Code[e.code], Code[code], e.message);
    if (field !== undefined) assert.equal(e.details.field, field, e.message);
    return true;
  });
}
