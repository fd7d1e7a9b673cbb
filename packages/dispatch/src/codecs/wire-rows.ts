/**
 * Float rows on the wire in one of the WireDtype encodings: FLOAT32 (exact), BF16 (upper 16 bits,
 * round to nearest even) or FP8_E4M3 (+ per-128 scales, dispatch only). A batch is encoded once
 * and each worker's rows are gathered from the encoded bytes (a row reaching 3 workers is
 * rounded once, copied 3 times); decoding validates every byte length against [rows, hidden].
 */
import { WireDtype } from "@expertmesh/proto";
import {
  bf16ToFloat32,
  bytesAsFloat32,
  bytesAsUint16,
  expectByteLength,
  float32ToBf16,
  invalidArgument,
  typedArrayBytes,
} from "@expertmesh/shared";
import { FP8_BLOCK, dequantizeFp8Rows, quantizeFp8Rows } from "./fp8-e4m3.ts";

/** Row encodings a DispatchRequest may use. */
export type RowDtype = WireDtype.FLOAT32 | WireDtype.BF16 | WireDtype.FP8_E4M3;
/** Sum encodings a DispatchResponse may use. */
export type CombineDtype = WireDtype.FLOAT32 | WireDtype.BF16;

/** Bytes per value of an encoding (FP8 scales not counted). */
export function bytesPerValue(dtype: RowDtype): number {
  return dtype === WireDtype.FLOAT32 ? 4 : dtype === WireDtype.BF16 ? 2 : 1;
}

export function isRowDtype(dtype: WireDtype): dtype is RowDtype {
  return dtype === WireDtype.FLOAT32 || dtype === WireDtype.BF16 || dtype === WireDtype.FP8_E4M3;
}

export function isCombineDtype(dtype: WireDtype): dtype is CombineDtype {
  return dtype === WireDtype.FLOAT32 || dtype === WireDtype.BF16;
}

/** Rows [R, H] as wire bytes: `data` R·H·bytesPerValue, `scales` R·H/128 float32 (FP8 only, else empty). */
export interface EncodedRows {
  readonly dtype: RowDtype;
  readonly hidden: number;
  readonly numRows: number;
  readonly data: Uint8Array;
  readonly scales: Uint8Array;
}

const EMPTY = new Uint8Array(0);

/** Encodes float32 rows [R, H]; FP8 needs H to be a multiple of 128. */
export function encodeRows(rows: Float32Array, hidden: number, dtype: RowDtype): EncodedRows {
  if (!Number.isInteger(hidden) || hidden <= 0)
    throw invalidArgument("hidden_size", `must be a positive integer, got ${hidden}`);
  if (rows.length % hidden !== 0)
    throw invalidArgument("rows", `length ${rows.length} is not a multiple of hidden ${hidden}`);
  const numRows = rows.length / hidden;
  switch (dtype) {
    case WireDtype.FLOAT32:
      return { dtype, hidden, numRows, data: typedArrayBytes(rows), scales: EMPTY };
    case WireDtype.BF16:
      return { dtype, hidden, numRows, data: typedArrayBytes(float32ToBf16(rows)), scales: EMPTY };
    case WireDtype.FP8_E4M3: {
      const { values, scales } = quantizeFp8Rows(rows, hidden);
      return { dtype, hidden, numRows, data: values, scales: typedArrayBytes(scales) };
    }
  }
}

/** The encoded rows listed in `rowIndex` ([n] indices into `encoded`), in that order: a fresh copy. */
export function gatherEncodedRows(encoded: EncodedRows, rowIndex: Int32Array): EncodedRows {
  const stride = encoded.hidden * bytesPerValue(encoded.dtype);
  const data = new Uint8Array(rowIndex.length * stride);
  const scaleStride = encoded.scales.byteLength === 0 ? 0 : (encoded.hidden / FP8_BLOCK) * 4;
  const scales = scaleStride === 0 ? EMPTY : new Uint8Array(rowIndex.length * scaleStride);
  for (let i = 0; i < rowIndex.length; i++) {
    const r = rowIndex[i] as number;
    if (!(r >= 0 && r < encoded.numRows))
      throw invalidArgument("rowIndex", `row ${r} outside 0..${encoded.numRows - 1}`);
    data.set(encoded.data.subarray(r * stride, (r + 1) * stride), i * stride);
    if (scaleStride !== 0)
      scales.set(encoded.scales.subarray(r * scaleStride, (r + 1) * scaleStride), i * scaleStride);
  }
  return { dtype: encoded.dtype, hidden: encoded.hidden, numRows: rowIndex.length, data, scales };
}

/**
 * Wire bytes → float32 rows [R, H] (always a fresh, aligned array the caller owns). Byte lengths
 * are checked against R and H: INVALID_ARGUMENT naming `field` (and `scalesField`) otherwise.
 */
export function decodeRows(
  data: Uint8Array,
  scales: Uint8Array,
  dtype: RowDtype,
  numRows: number,
  hidden: number,
  field = "rows",
  scalesField = "row_scales",
): Float32Array {
  const n = numRows * hidden;
  expectByteLength(data, n * bytesPerValue(dtype), field);
  if (dtype !== WireDtype.FP8_E4M3) expectByteLength(scales, 0, scalesField);
  switch (dtype) {
    case WireDtype.FLOAT32: {
      // Copied: the decoded view aliases the message and may be unaligned.
      const out = new Float32Array(n);
      typedArrayBytes(out).set(data);
      return out;
    }
    case WireDtype.BF16:
      return bf16ToFloat32(bytesAsUint16(data, field));
    case WireDtype.FP8_E4M3: {
      if (hidden % FP8_BLOCK !== 0) {
        throw invalidArgument("hidden_size", `FP8_E4M3 rows need a multiple of ${FP8_BLOCK}, got ${hidden}`);
      }
      expectByteLength(scales, (n / FP8_BLOCK) * 4, scalesField);
      const s = bytesAsFloat32(scales, scalesField);
      for (let i = 0; i < s.length; i++) {
        const v = s[i] as number;
        if (!(v >= 0 && v < Infinity))
          throw invalidArgument(scalesField, `scale ${i} is ${v}; scales must be finite and ≥ 0`);
      }
      return dequantizeFp8Rows(data, s, hidden);
    }
  }
}

/**
 * Combine: adds decoded sums [n, H] into `out` [T, H] at rows `rowIndex` [n] (float32
 * accumulation, decoding BF16 on the fly — no intermediate array). `data` is checked against n·H.
 */
export function addEncodedRows(
  out: Float32Array,
  rowIndex: Int32Array,
  data: Uint8Array,
  dtype: CombineDtype,
  hidden: number,
  field = "sums",
): void {
  const n = rowIndex.length;
  expectByteLength(data, n * hidden * bytesPerValue(dtype), field);
  if (dtype === WireDtype.FLOAT32) {
    const sums = bytesAsFloat32(data, field);
    for (let i = 0; i < n; i++) {
      const o = (rowIndex[i] as number) * hidden;
      const s = i * hidden;
      for (let h = 0; h < hidden; h++) out[o + h] = (out[o + h] as number) + (sums[s + h] as number);
    }
    return;
  }
  const bits = bytesAsUint16(data, field);
  // A float32 whose upper half is the bf16 value: decode through one scratch word.
  const word = new Uint32Array(1);
  const value = new Float32Array(word.buffer);
  for (let i = 0; i < n; i++) {
    const o = (rowIndex[i] as number) * hidden;
    const s = i * hidden;
    for (let h = 0; h < hidden; h++) {
      word[0] = (bits[s + h] as number) << 16;
      out[o + h] = (out[o + h] as number) + (value[0] as number);
    }
  }
}

/** Encodes float32 sums [R, H] for a DispatchResponse. */
export function encodeSums(sums: Float32Array, dtype: CombineDtype): Uint8Array {
  return dtype === WireDtype.FLOAT32 ? typedArrayBytes(sums) : typedArrayBytes(float32ToBf16(sums));
}
