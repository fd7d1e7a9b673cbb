import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeBf16, decodeFp8Block, f16ToF32, FP8_E4M3_TABLE } from "./dtype-decode.ts";

test("e4m3fn table: the format's landmarks", () => {
  assert.equal(FP8_E4M3_TABLE[0x7e], 448);
  assert.equal(FP8_E4M3_TABLE[0xfe], -448);
  assert.ok(Number.isNaN(FP8_E4M3_TABLE[0x7f]!) && Number.isNaN(FP8_E4M3_TABLE[0xff]!));
  assert.equal(FP8_E4M3_TABLE[0x01], 2 ** -9); // smallest subnormal
  assert.equal(FP8_E4M3_TABLE[0x07], 7 * 2 ** -9);
  assert.equal(FP8_E4M3_TABLE[0x08], 2 ** -6); // smallest normal
  assert.equal(FP8_E4M3_TABLE[0x38], 1);
  assert.equal(FP8_E4M3_TABLE[0x78], 256);
  assert.ok(Object.is(FP8_E4M3_TABLE[0x80], -0));
});

test("f16ToF32 covers normals, subnormals, infinities and NaN", () => {
  assert.equal(f16ToF32(0x3c00), 1);
  assert.equal(f16ToF32(0xc000), -2);
  assert.equal(f16ToF32(0x7bff), 65504);
  assert.equal(f16ToF32(0x0001), 2 ** -24);
  assert.equal(f16ToF32(0x03ff), 1023 * 2 ** -24);
  assert.equal(f16ToF32(0x7c00), Infinity);
  assert.equal(f16ToF32(0xfc00), -Infinity);
  assert.ok(Number.isNaN(f16ToF32(0x7e00)));
  assert.ok(Object.is(f16ToF32(0x8000), -0));
});

test("decodeFp8Block in arbitrary chunks (as the reader's 16 MiB reads cut rows) equals one pass", () => {
  const rows = 300;
  const cols = 290; // grid [3, 3] with partial edge blocks
  const bytes = new Uint8Array(rows * cols);
  for (let i = 0; i < bytes.length; i++) {
    const b = (i * 131 + 7) % 256; // every code, the NaNs (0x7F, 0xFF) replaced by ±448
    bytes[i] = (b & 0x7f) === 0x7f ? b - 1 : b;
  }
  const scales = new Float32Array(9).map((_, k) => 0.5 + k);
  const whole = new Float32Array(rows * cols);
  decodeFp8Block(bytes, bytes.length, whole, 0, cols, scales, 128, 128);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const want = Math.fround(
        FP8_E4M3_TABLE[bytes[i * cols + j]!]! * scales[Math.floor(i / 128) * 3 + Math.floor(j / 128)]!,
      );
      if (whole[i * cols + j] !== want) assert.fail(`[${i}][${j}]`);
    }
  }
  const pieces = new Float32Array(rows * cols);
  for (let start = 0, step = 1; start < bytes.length; start += step, step = ((step * 7 + 3) % 1000) + 1) {
    const n = Math.min(step, bytes.length - start);
    decodeFp8Block(bytes.subarray(start, start + n), n, pieces, start, cols, scales, 128, 128);
  }
  assert.deepEqual(pieces, whole);
});

test("decodeBf16 writes at an offset", () => {
  const src = new Uint8Array(new Uint16Array([0x3f80, 0xc040]).buffer); // 1, -3
  const out = new Float32Array(4);
  decodeBf16(src, 2, out, 1);
  assert.deepEqual([...out], [0, 1, -3, 0]);
});
