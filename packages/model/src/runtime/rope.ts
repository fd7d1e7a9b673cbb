/**
 * Rotary position embedding of DeepSeek-V3 MLA: interleaved pairs (dims 2i, 2i+1 rotate together
 * by position · invFreq[i]) with YaRN-corrected frequencies, and the attention softmax scale
 * (with YaRN's mscale² factor). Frequencies are computed in float32 the way the reference does.
 */
import type { ModelConfig } from "../config/model-config.ts";

export interface RopeParams {
  /** Rotated dims per head (qk_rope_head_dim). */
  readonly dim: number;
  /** The dim/2 frequencies actually used (YaRN-corrected when rope scaling is on). */
  readonly invFreq: Float32Array;
  /** [low, high] of the YaRN ramp, or null for plain RoPE. */
  readonly correctionRange: readonly [number, number] | null;
  /** Factor on cos/sin (Hugging Face's get_mscale(f, mscale) / get_mscale(f, mscale_all_dim); 1 for V3). */
  readonly cosSinScale: number;
  /** Attention softmax scale: (qk_nope + qk_rope)^-0.5 × yarn mscale². */
  readonly softmaxScale: number;
}

const f32 = Math.fround;

function yarnGetMscale(factor: number, mscale: number): number {
  return factor <= 1 ? 1 : 0.1 * mscale * Math.log(factor) + 1;
}

export function ropeParams(config: ModelConfig): RopeParams {
  const d = config.qkRopeHeadDim;
  const base = config.ropeTheta;
  const half = d / 2;
  const invFreq = new Float32Array(half);
  for (let i = 0; i < half; i++) invFreq[i] = f32(1 / f32(Math.pow(base, f32((2 * i) / d))));
  let softmaxScale = Math.pow(config.qkNopeHeadDim + config.qkRopeHeadDim, -0.5);
  const y = config.ropeScaling;
  if (y === null) return { dim: d, invFreq, correctionRange: null, cosSinScale: 1, softmaxScale };

  const correctionDim = (rotations: number): number =>
    (d * Math.log(y.originalMaxPositionEmbeddings / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
  const low = Math.max(Math.floor(correctionDim(y.betaFast)), 0);
  let high = Math.min(Math.ceil(correctionDim(y.betaSlow)), d - 1);
  const range: [number, number] = [low, high];
  if (low === high) high += 0.001;
  for (let i = 0; i < half; i++) {
    const ramp = f32(Math.min(Math.max(f32(f32(i - low) / f32(high - low)), 0), 1));
    const base_ = invFreq[i] as number;
    // inv_freq / factor * ramp + inv_freq * (1 - ramp), each step rounded to float32 as in torch
    invFreq[i] = f32(f32(f32(base_ / y.factor) * ramp) + f32(base_ * f32(1 - ramp)));
  }
  const m = yarnGetMscale(y.factor, y.mscaleAllDim);
  softmaxScale = softmaxScale * m * m;
  const cosSinScale = yarnGetMscale(y.factor, y.mscale) / m;
  return { dim: d, invFreq, correctionRange: range, cosSinScale, softmaxScale };
}

/**
 * cos/sin of position · invFreq for positions [0, capacity), grown on demand.
 * Layout: [positions, dim/2].
 */
export class RopeTables {
  private capacity = 0;
  private cosTable = new Float32Array(0);
  private sinTable = new Float32Array(0);

  constructor(readonly params: RopeParams) {}

  /** Ensures positions [0, positions) are tabulated. */
  ensure(positions: number): void {
    if (positions <= this.capacity) return;
    const cap = Math.max(positions, this.capacity * 2, 256);
    const half = this.params.dim / 2;
    const cos = new Float32Array(cap * half);
    const sin = new Float32Array(cap * half);
    cos.set(this.cosTable);
    sin.set(this.sinTable);
    const s = this.params.cosSinScale;
    for (let p = this.capacity; p < cap; p++) {
      for (let i = 0; i < half; i++) {
        // angle rounded to float32 as torch.outer(t, freqs) does
        const angle = f32(p * (this.params.invFreq[i] as number));
        cos[p * half + i] = Math.cos(angle) * s;
        sin[p * half + i] = Math.sin(angle) * s;
      }
    }
    this.cosTable = cos;
    this.sinTable = sin;
    this.capacity = cap;
  }

  /**
   * Rows for the given positions in the layout of the interleaved-pair rotation:
   * outCos [n, dim] with cos_i at 2i and 2i+1; outSin [n, dim] with -sin_i at 2i and +sin_i at 2i+1.
   */
  gatherInterleaved(positions: ArrayLike<number>, outCos: Float32Array, outSin: Float32Array): void {
    const dim = this.params.dim;
    const half = dim / 2;
    let max = 0;
    for (let i = 0; i < positions.length; i++) max = Math.max(max, positions[i] as number);
    this.ensure(max + 1);
    for (let r = 0; r < positions.length; r++) {
      const p = (positions[r] as number) * half;
      for (let i = 0; i < half; i++) {
        const c = this.cosTable[p + i] as number;
        const s = this.sinTable[p + i] as number;
        outCos[r * dim + 2 * i] = c;
        outCos[r * dim + 2 * i + 1] = c;
        outSin[r * dim + 2 * i] = -s;
        outSin[r * dim + 2 * i + 1] = s;
      }
    }
  }
}
