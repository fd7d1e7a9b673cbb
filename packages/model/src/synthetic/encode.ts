/** float32 → stored dtypes, round-to-nearest-even (what torch's .to(bfloat16/float8_e4m3fn) does). */
import { FP8_E4M3_MAX } from "../checkpoint/dtype-decode.ts";

/** Writes `src` as little-endian BF16 into `dst` (2 bytes per value). */
export function encodeBf16(src: Float32Array, dst: Uint8Array): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(dst.buffer, dst.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const b = bits[i]!;
    if ((b & 0x7fffffff) > 0x7f800000) {
      out[i] = (b >>> 16) | 0x40; // keep NaN a (quiet) NaN
      continue;
    }
    out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** Bits of 448.0f and of 2^-6 (the smallest e4m3 normal) as float32. */
const F32_BITS_448 = 0x43e00000;
const F32_BITS_MIN_NORMAL = 0x3c800000;

/**
 * The e4m3fn byte nearest to float32(v) (ties to even), saturating at ±448; NaN → 0x7F.
 * v is rounded to float32 first, as torch does when it divides two float32 tensors.
 */
export function encodeE4m3(v: number): number {
  f32[0] = v;
  const bits = u32[0]!;
  const sign = (bits >>> 24) & 0x80;
  const a = bits & 0x7fffffff;
  if (a > 0x7f800000) return 0x7f;
  if (a >= F32_BITS_448) return sign | 0x7e;
  if (a < F32_BITS_MIN_NORMAL) {
    // Subnormal range: multiples of 2^-9; |v|·512 is exact. 8 means the smallest normal, code 0x08.
    return sign | roundHalfEven(Math.abs(f32[0]) * 512);
  }
  // float32 exponent (bias 127) and top 3 mantissa bits sit in bits 30..20: rebias to 7.
  let code = (a >>> 20) - (120 << 3);
  const rest = a & 0xfffff;
  if (rest > 0x80000 || (rest === 0x80000 && (code & 1) === 1)) code++; // a carry into the exponent is right
  return sign | Math.min(code, 0x7e);
}

function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5 || (d === 0.5 && (f & 1) === 1)) return f + 1;
  return f;
}

/**
 * Quantises a [rows, cols] float32 weight to e4m3fn with one scale per block:
 * scale_inv = block amax / 448 (1 for an all-zero block), fp8 = round(w / scale_inv).
 * Returns the [ceil(rows/br), ceil(cols/bc)] scale grid; bytes go to `dst`.
 */
export function quantizeE4m3Blocks(
  src: Float32Array,
  rows: number,
  cols: number,
  blockRows: number,
  blockCols: number,
  dst: Uint8Array,
): Float32Array {
  const gridRows = Math.ceil(rows / blockRows);
  const gridCols = Math.ceil(cols / blockCols);
  const scales = new Float32Array(gridRows * gridCols);
  for (let i = 0; i < rows; i++) {
    const g = Math.floor(i / blockRows) * gridCols;
    for (let bj = 0; bj < gridCols; bj++) {
      const end = Math.min(cols, (bj + 1) * blockCols);
      let amax = scales[g + bj]!;
      for (let j = bj * blockCols; j < end; j++) amax = Math.max(amax, Math.abs(src[i * cols + j]!));
      scales[g + bj] = amax;
    }
  }
  for (let k = 0; k < scales.length; k++)
    scales[k] = scales[k] === 0 ? 1 : Math.fround(scales[k]! / FP8_E4M3_MAX);
  for (let i = 0; i < rows; i++) {
    const g = Math.floor(i / blockRows) * gridCols;
    for (let bj = 0; bj < gridCols; bj++) {
      const end = Math.min(cols, (bj + 1) * blockCols);
      const scale = scales[g + bj]!;
      for (let j = bj * blockCols; j < end; j++) dst[i * cols + j] = encodeE4m3(src[i * cols + j]! / scale);
    }
  }
  return scales;
}
