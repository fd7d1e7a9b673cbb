/**
 * Numbers carried in `bytes` fields: dense little-endian arrays (see proto/expertmesh/v1).
 *
 * protobuf-es decodes a `bytes` field as a Uint8Array view into the received buffer at an
 * arbitrary offset, and `new Float32Array(b.buffer, b.byteOffset, n)` throws when that offset is
 * not a multiple of 4. The `bytesAs*` helpers return a zero-copy view when the offset is aligned
 * and an aligned copy when it is not; either way, treat the result as read-only (a view aliases
 * the message). Typed arrays use the platform's byte order, so this module refuses to load on a
 * big-endian machine rather than misread the wire.
 */
import { endianness } from "node:os";
import { Code, ExpertMeshError, invalidArgument } from "../errors.ts";

if (endianness() !== "LE") {
  throw new ExpertMeshError(
    Code.FAILED_PRECONDITION,
    "the wire format is little-endian; this platform is not",
  );
}

/** The bytes of a typed array, without copying (for a `bytes` field of an outgoing message). */
export function typedArrayBytes(array: ArrayBufferView): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

/** Throws INVALID_ARGUMENT unless `bytes` holds exactly `expected` bytes (shape checks). */
export function expectByteLength(bytes: Uint8Array, expected: number, field: string): void {
  if (bytes.byteLength !== expected) {
    throw invalidArgument(field, `expected ${expected} bytes, got ${bytes.byteLength}`);
  }
}

type TypedArrayOf<T> = T extends Float32ArrayConstructor
  ? Float32Array
  : T extends Int32ArrayConstructor
    ? Int32Array
    : T extends Uint32ArrayConstructor
      ? Uint32Array
      : Uint16Array;

type ArrayConstructorOf =
  Float32ArrayConstructor | Int32ArrayConstructor | Uint32ArrayConstructor | Uint16ArrayConstructor;

function bytesAs<C extends ArrayConstructorOf>(type: C, bytes: Uint8Array, field: string): TypedArrayOf<C> {
  const size = type.BYTES_PER_ELEMENT;
  if (bytes.byteLength % size !== 0) {
    throw invalidArgument(field, `byte length ${bytes.byteLength} is not a multiple of ${size}`);
  }
  const length = bytes.byteLength / size;
  if (bytes.byteOffset % size === 0) {
    return new type(bytes.buffer as ArrayBuffer, bytes.byteOffset, length) as TypedArrayOf<C>;
  }
  const aligned = new Uint8Array(bytes.byteLength);
  aligned.set(bytes);
  return new type(aligned.buffer, 0, length) as TypedArrayOf<C>;
}

/** float32 values of a `bytes` field; `field` names it in the error for a bad length. */
export function bytesAsFloat32(bytes: Uint8Array, field = "bytes"): Float32Array {
  return bytesAs(Float32Array, bytes, field);
}

/** int32 values of a `bytes` field (expert ids, -1 for empty slots). */
export function bytesAsInt32(bytes: Uint8Array, field = "bytes"): Int32Array {
  return bytesAs(Int32Array, bytes, field);
}

/** uint32 values of a `bytes` field. */
export function bytesAsUint32(bytes: Uint8Array, field = "bytes"): Uint32Array {
  return bytesAs(Uint32Array, bytes, field);
}

/** uint16 values of a `bytes` field (BF16 rows as raw bits). */
export function bytesAsUint16(bytes: Uint8Array, field = "bytes"): Uint16Array {
  return bytesAs(Uint16Array, bytes, field);
}

/**
 * float32 → bfloat16 bits, rounding to nearest even (NaN stays a quiet NaN).
 * `out` may be passed to reuse a buffer; it must have src.length elements.
 */
export function float32ToBf16(
  src: Float32Array,
  out: Uint16Array = new Uint16Array(src.length),
): Uint16Array {
  if (out.length !== src.length)
    throw invalidArgument("out", `expected ${src.length} elements, got ${out.length}`);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i] as number;
    out[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x0040 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** bfloat16 bits → float32 (exact). `out` may be passed to reuse a buffer. */
export function bf16ToFloat32(
  src: Uint16Array,
  out: Float32Array = new Float32Array(src.length),
): Float32Array {
  if (out.length !== src.length)
    throw invalidArgument("out", `expected ${src.length} elements, got ${out.length}`);
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) bits[i] = (src[i] as number) << 16;
  return out;
}
