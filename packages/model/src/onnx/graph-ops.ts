/**
 * Building blocks of the model graphs, each exact in float32 and written the way the reference
 * computes it (same operations, same rounding points up to summation order).
 */
import { floatAttr, type GraphBuilder } from "./graph-builder.ts";

/** y = x · wᵀ for a Linear weight stored [out, in]; onnxruntime fuses the Transpose into the GEMM. */
export function linear(b: GraphBuilder, x: string, w: string, output?: string): string {
  return b.op(
    "MatMul",
    [x, b.op("Transpose", [w], { perm: [1, 0] })],
    {},
    output === undefined ? {} : { outputs: [output] },
  );
}

/**
 * RMSNorm over the last axis: x · rsqrt(mean(x²) + eps) · w (onnxruntime's
 * SimplifiedLayerNormalization kernel, float32 throughout).
 */
export function rmsNorm(b: GraphBuilder, x: string, w: string, eps: number, output?: string): string {
  return b.op(
    "SimplifiedLayerNormalization",
    [x, w],
    { axis: -1, epsilon: floatAttr(eps) },
    output === undefined ? {} : { outputs: [output] },
  );
}

/** SwiGLU MLP: down(silu(gate(x)) · up(x)). */
export function swiglu(
  b: GraphBuilder,
  x: string,
  wGate: string,
  wUp: string,
  wDown: string,
  output?: string,
): string {
  const g = linear(b, x, wGate);
  const silu = b.op("Mul", [g, b.op("Sigmoid", [g])]);
  return linear(b, b.op("Mul", [silu, linear(b, x, wUp)]), wDown, output);
}

/** Slice of `x` along one axis: [start, end). */
export function sliceAxis(b: GraphBuilder, x: string, axis: number, start: number, end: number): string {
  return b.op("Slice", [x, b.int64s([start]), b.int64s([end]), b.int64s([axis])]);
}

/**
 * Interleaved rotary embedding: pairs (2i, 2i+1) of the last axis rotate by the angle of pair i.
 * x: [T, n, dim]; cos: [T, 1, dim] (cos_i at 2i and 2i+1); sin: [T, 1, dim] (-sin_i at 2i,
 * +sin_i at 2i+1). out = x·cos + swap(x)·sin with swap exchanging each pair, i.e.
 * (x0·cos − x1·sin, x1·cos + x0·sin) with the same float32 roundings as a complex multiply.
 */
export function ropeInterleaved(b: GraphBuilder, x: string, cos: string, sin: string, dim: number): string {
  const swapIdx = b.int64s(Array.from({ length: dim }, (_, i) => i ^ 1));
  const swapped = b.op("Gather", [x, swapIdx], { axis: -1 });
  return b.op("Add", [b.op("Mul", [x, cos]), b.op("Mul", [swapped, sin])]);
}
