/**
 * FP8 E4M3FN on the wire (OCP "fn" variant: bias 7, no infinities, max ±448, NaN = S.1111.111),
 * with one float32 scale per 128 consecutive values of a row, as DeepEP dispatches:
 * scale = amax(block) / 448, value = e4m3(x / scale) · scale. Round to nearest even, saturating.
 *
 * Error of a round trip, per value x of a block with scale s: at most 2⁻⁴·|x| (3 mantissa bits,
 * half an ulp) where x/s is normal (|x/s| ≥ 2⁻⁶), at most 2⁻¹⁰·s where it is subnormal.
 */
import { Code, ExpertMeshError, invalidArgument } from "@expertmesh/shared";

/** Largest finite E4M3FN magnitude. */
export const FP8_E4M3_MAX = 448;
/** Values sharing one scale, along a row. */
export const FP8_BLOCK = 128;

/** [256] float value of every E4M3FN byte (0x7F / 0xFF are NaN). */
export const FP8_E4M3_VALUES: Float32Array = (() => {
  const table = new Float32Array(256);
  for (let b = 0; b < 256; b++) {
    const e = (b >>> 3) & 0xf;
    const m = b & 7;
    const magnitude = e === 0 ? m * 2 ** -9 : e === 15 && m === 7 ? Number.NaN : (1 + m / 8) * 2 ** (e - 7);
    table[b] = b & 0x80 ? -magnitude : magnitude;
  }
  return table;
})();

// Scratch for reading a number's float32 bits (single-threaded, never held across calls).
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** float32 bits of 2⁻⁶, the smallest normal E4M3 magnitude. */
const MIN_NORMAL_BITS = 0x3c800000;
/** float32 bits of 464: the midpoint between 448 and the next (non-existent) step; above it saturates. */
const SATURATE_BITS = 0x43e80000;

/** One value (rounded to float32 first) → its E4M3FN byte: nearest even, ±448 beyond range, NaN → 0x7F. */
export function encodeFp8E4M3(x: number): number {
  scratchF32[0] = x;
  const bits = scratchU32[0] as number;
  const sign = (bits >>> 24) & 0x80;
  const abs = bits & 0x7fffffff;
  if (abs > 0x7f800000) return sign | 0x7f;
  if (abs > SATURATE_BITS) return sign | 0x7e;
  if (abs >= MIN_NORMAL_BITS) {
    // Drop 20 of the 23 mantissa bits with round-to-nearest-even, then rebias the exponent
    // (127 → 7); a carry out of the mantissa bumps the exponent, as it should.
    const rounded = (abs + 0x7ffff + ((abs >>> 20) & 1)) >>> 20;
    return sign | (rounded - (120 << 3));
  }
  // Subnormal: a multiple of 2⁻⁹; 8·2⁻⁹ = 2⁻⁶ is byte 0x08, the smallest normal, so it fits.
  scratchU32[0] = abs;
  const y = scratchF32[0] * 512;
  let q = Math.round(y);
  if (q - y === 0.5 && (q & 1) === 1) q -= 1; // Math.round rounds ties up; make them even
  return sign | q;
}

/** E4M3FN-quantized rows: values [rows, cols] bytes and scales [rows, cols / 128]. */
export interface Fp8Rows {
  readonly values: Uint8Array;
  readonly scales: Float32Array;
}

function checkCols(cols: number): void {
  if (!Number.isInteger(cols) || cols <= 0 || cols % FP8_BLOCK !== 0) {
    throw invalidArgument("hidden_size", `FP8_E4M3 needs a positive multiple of ${FP8_BLOCK}, got ${cols}`);
  }
}

/**
 * Quantizes [rows, cols] float32 (cols a multiple of 128) with one scale per 128-value block.
 * An all-zero block gets scale 0. Non-finite input has no FP8 form: INVALID_ARGUMENT.
 */
export function quantizeFp8Rows(src: Float32Array, cols: number): Fp8Rows {
  checkCols(cols);
  if (src.length % cols !== 0)
    throw invalidArgument("rows", `length ${src.length} is not a multiple of ${cols}`);
  const blocks = src.length / FP8_BLOCK;
  const values = new Uint8Array(src.length);
  const scales = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    const start = b * FP8_BLOCK;
    const end = start + FP8_BLOCK;
    let amax = 0;
    for (let i = start; i < end; i++) amax = Math.max(amax, Math.abs(src[i] as number));
    if (!Number.isFinite(amax)) {
      throw new ExpertMeshError(
        Code.INVALID_ARGUMENT,
        `rows: block ${b} (row ${Math.floor(start / cols)}) holds a non-finite value; FP8_E4M3 cannot carry it`,
        { details: { field: "rows" } },
      );
    }
    if (amax === 0) continue; // values stay 0x00, scale 0
    const scale = Math.fround(amax / FP8_E4M3_MAX);
    scales[b] = scale;
    const inv = 1 / scale;
    for (let i = start; i < end; i++) values[i] = encodeFp8E4M3((src[i] as number) * inv);
  }
  return { values, scales };
}

/** values [rows, cols] E4M3FN bytes × scales [rows, cols / 128] → float32 [rows, cols]. */
export function dequantizeFp8Rows(
  values: Uint8Array,
  scales: Float32Array,
  cols: number,
  out: Float32Array = new Float32Array(values.length),
): Float32Array {
  checkCols(cols);
  if (values.length % cols !== 0)
    throw invalidArgument("rows", `length ${values.length} is not a multiple of ${cols}`);
  if (scales.length * FP8_BLOCK !== values.length) {
    throw invalidArgument("row_scales", `expected ${values.length / FP8_BLOCK} scales, got ${scales.length}`);
  }
  if (out.length !== values.length)
    throw invalidArgument("out", `expected ${values.length} elements, got ${out.length}`);
  const table = FP8_E4M3_VALUES;
  for (let b = 0; b < scales.length; b++) {
    const scale = scales[b] as number;
    const start = b * FP8_BLOCK;
    for (let i = start; i < start + FP8_BLOCK; i++) out[i] = (table[values[i] as number] as number) * scale;
  }
  return out;
}
