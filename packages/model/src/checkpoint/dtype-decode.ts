/**
 * Decoding of stored dtypes to float32. All decoders write straight into the caller's
 * Float32Array from a raw byte chunk, so no second full-size copy of a tensor ever exists.
 */

/** e4m3fn value of every byte: 1 sign, 4 exponent (bias 7), 3 mantissa; no inf; 0x7F/0xFF NaN. */
export const FP8_E4M3_TABLE: Float32Array = buildE4m3Table();

function buildE4m3Table(): Float32Array {
  const table = new Float32Array(256);
  for (let b = 0; b < 256; b++) {
    const sign = b & 0x80 ? -1 : 1;
    const exp = (b >> 3) & 0x0f;
    const man = b & 0x07;
    let v: number;
    if (exp === 0x0f && man === 0x07) v = NaN;
    else if (exp === 0)
      v = man * 2 ** -9; // subnormal: (m/8)·2^(1-7)
    else v = (1 + man / 8) * 2 ** (exp - 7);
    table[b] = sign * v;
  }
  return table;
}

/** Largest finite e4m3fn value. */
export const FP8_E4M3_MAX = 448;

/** float32 value of an IEEE half (exact: every f16 is representable in f32). */
export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0) return sign * man * 2 ** -24;
  if (exp === 0x1f) return man === 0 ? sign * Infinity : NaN;
  return sign * (1 + man / 1024) * 2 ** (exp - 15);
}

const IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Safetensors data is little-endian; typed-array views below assume the host agrees. */
export function assertLittleEndianHost(): void {
  if (!IS_LITTLE_ENDIAN) throw new Error("ExpertMesh checkpoints need a little-endian host");
}

/**
 * Widens `count` BF16 values from `src` (byte view, 2-aligned offset 0) into out[outStart..].
 * BF16 is the top half of an f32, so the widening is exact: bits << 16.
 */
export function decodeBf16(src: Uint8Array, count: number, out: Float32Array, outStart: number): void {
  const in16 = new Uint16Array(src.buffer, src.byteOffset, count);
  const out32 = new Uint32Array(out.buffer, out.byteOffset + outStart * 4, count);
  for (let i = 0; i < count; i++) out32[i] = in16[i]! << 16;
}

export function decodeF16(src: Uint8Array, count: number, out: Float32Array, outStart: number): void {
  const in16 = new Uint16Array(src.buffer, src.byteOffset, count);
  for (let i = 0; i < count; i++) out[outStart + i] = f16ToF32(in16[i]!);
}

/**
 * Dequantises `count` e4m3fn bytes starting at flat element index `start` of a [rows, cols]
 * weight: w[i][j] = fp8[i][j] × scale[⌊i/blockRows⌋][⌊j/blockCols⌋]. `scales` is the
 * [ceil(rows/blockRows), ceil(cols/blockCols)] grid, row-major. The product of two float32
 * values is exact in a double, so storing it into the Float32Array rounds once: the same
 * result as a float32 multiply.
 */
export function decodeFp8Block(
  src: Uint8Array,
  count: number,
  out: Float32Array,
  start: number,
  cols: number,
  scales: Float32Array,
  blockRows: number,
  blockCols: number,
): void {
  const gridCols = Math.ceil(cols / blockCols);
  let row = Math.floor(start / cols);
  let col = start - row * cols;
  let k = 0;
  while (k < count) {
    // One run: the rest of this row, cut at block-column boundaries (one scale per run).
    const scaleRow = Math.floor(row / blockRows) * gridCols;
    while (col < cols && k < count) {
      const blockEnd = Math.min(cols, (Math.floor(col / blockCols) + 1) * blockCols, col + (count - k));
      const scale = scales[scaleRow + Math.floor(col / blockCols)]!;
      for (; col < blockEnd; col++, k++) out[start + k] = FP8_E4M3_TABLE[src[k]!]! * scale;
    }
    col = 0;
    row++;
  }
}
