import assert from "node:assert/strict";
import { test } from "node:test";
import { FP8_E4M3_TABLE } from "../checkpoint/dtype-decode.ts";
import { encodeBf16, encodeE4m3, quantizeE4m3Blocks } from "./encode.ts";
import { Prng } from "./prng.ts";

test("encodeE4m3 picks the nearest value, ties to even, saturating at 448", () => {
  const finite = [...FP8_E4M3_TABLE].filter((v) => Number.isFinite(v));
  const rng = new Prng(3, "e4m3");
  for (let t = 0; t < 20000; t++) {
    const x = Math.fround((rng.nextFloat() * 2 - 1) * 2 ** (rng.nextFloat() * 22 - 12));
    const clamped = Math.max(-448, Math.min(448, x));
    const best = Math.min(...finite.map((v) => Math.abs(clamped - v)));
    assert.equal(Math.abs(clamped - FP8_E4M3_TABLE[encodeE4m3(x)]!), best, `x=${x}`);
  }
  for (let c = 0; c < 0x7e; c++) {
    const mid = (FP8_E4M3_TABLE[c]! + FP8_E4M3_TABLE[c + 1]!) / 2;
    assert.equal(encodeE4m3(mid), c % 2 === 0 ? c : c + 1, `tie between codes ${c} and ${c + 1}`);
  }
  assert.equal(encodeE4m3(1e9), 0x7e);
  assert.equal(encodeE4m3(-1e9), 0xfe);
  assert.equal(encodeE4m3(NaN), 0x7f);
});

test("encodeBf16 rounds to nearest even", () => {
  const src = new Float32Array([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -2.5]);
  const dst = new Uint8Array(src.length * 2);
  encodeBf16(src, dst);
  const back = new Float32Array(
    new Uint32Array(Array.from(new Uint16Array(dst.buffer), (h) => h << 16)).buffer,
  );
  assert.deepEqual([...back], [1, 1, 1 + 4 * 2 ** -8, 1 + 2 ** -7, -2.5]);
});

test("quantizeE4m3Blocks: per-block scales, partial edge blocks, error within e4m3 precision", () => {
  const rows = 200;
  const cols = 130;
  const w = new Float32Array(rows * cols);
  new Prng(5, "w").fillNormal(w, 0.02);
  w[0] = 1; // one large value: only block (0, 0) gets the large scale
  const q = new Uint8Array(w.length);
  const scales = quantizeE4m3Blocks(w, rows, cols, 128, 128, q);
  assert.equal(scales.length, 2 * 2);
  assert.equal(scales[0], Math.fround(1 / 448));
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const s = scales[Math.floor(i / 128) * 2 + Math.floor(j / 128)]!;
      const x = w[i * cols + j]!;
      const back = FP8_E4M3_TABLE[q[i * cols + j]!]! * s;
      // Half an e4m3 ulp: 2^-4 relative for normals, 2^-10 × scale in the subnormal range.
      assert.ok(Math.abs(back - x) <= Math.abs(x) / 16 + s * 2 ** -10 + 1e-12, `[${i}][${j}] ${x} → ${back}`);
    }
  }
});
