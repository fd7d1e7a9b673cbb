/**
 * Building blocks of the model graphs, each exact in float32 and written the way the reference
 * computes it (same operations, same rounding points up to summation order).
 */
import type { GraphBuilder } from "./graph-builder.ts";

/** y = x · wᵀ for a Linear weight stored [out, in]; onnxruntime fuses the Transpose into the GEMM. */
export function linear(b: GraphBuilder, x: string, w: string): string {
  return b.op("MatMul", [x, b.op("Transpose", [w], { perm: [1, 0] })]);
}

/** RMSNorm over the last axis: x · rsqrt(mean(x²) + eps) · w. */
export function rmsNorm(b: GraphBuilder, x: string, w: string, eps: number): string {
  const ms = b.op("ReduceMean", [b.op("Mul", [x, x])], { axes: [-1], keepdims: 1 });
  const inv = b.op("Reciprocal", [b.op("Sqrt", [b.op("Add", [ms, b.scalar(eps)])])]);
  return b.op("Mul", [b.op("Mul", [x, inv]), w]);
}

/** SwiGLU MLP: down(silu(gate(x)) · up(x)). */
export function swiglu(b: GraphBuilder, x: string, wGate: string, wUp: string, wDown: string): string {
  const g = linear(b, x, wGate);
  const silu = b.op("Mul", [g, b.op("Sigmoid", [g])]);
  return linear(b, b.op("Mul", [silu, linear(b, x, wUp)]), wDown);
}

/** Slice of `x` along one axis: [start, end). */
export function sliceAxis(b: GraphBuilder, x: string, axis: number, start: number, end: number): string {
  return b.op("Slice", [x, b.int64s([start]), b.int64s([end]), b.int64s([axis])]);
}

/**
 * Interleaved rotary embedding: pairs (2i, 2i+1) of the last axis rotate by the angle whose
 * cos/sin are given. x: [T, n, dim]; cos/sin: [T, 1, dim/2, 1] (broadcast over n). Returns [T, n, dim].
 */
export function ropeInterleaved(b: GraphBuilder, x: string, cos: string, sin: string, n: number, dim: number): string {
  const pairs = b.op("Reshape", [x, b.int64s([-1, n, dim / 2, 2])]); // [T, n, dim/2, 2]
  const x0 = sliceAxis(b, pairs, 3, 0, 1);
  const x1 = sliceAxis(b, pairs, 3, 1, 2);
  const o0 = b.op("Sub", [b.op("Mul", [x0, cos]), b.op("Mul", [x1, sin])]);
  const o1 = b.op("Add", [b.op("Mul", [x0, sin]), b.op("Mul", [x1, cos])]);
  return b.op("Reshape", [b.op("Concat", [o0, o1], { axis: 3 }), b.int64s([-1, n, dim])]);
}
