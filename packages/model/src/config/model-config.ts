/** A validated DeepSeek-V3-architecture config (from a Hugging Face config.json). */
export interface YarnScaling {
  factor: number;
  originalMaxPositionEmbeddings: number;
  betaFast: number;
  betaSlow: number;
  mscale: number;
  mscaleAllDim: number;
}

export interface ModelConfig {
  vocabSize: number;
  hiddenSize: number;
  /** Main-model layers (MTP layers beyond this are ignored). */
  numLayers: number;
  /** Layers [0, firstKDenseReplace) use the dense MLP; the rest are MoE. */
  firstKDenseReplace: number;
  intermediateSize: number;
  moeIntermediateSize: number;
  numHeads: number;
  qLoraRank: number;
  kvLoraRank: number;
  qkNopeHeadDim: number;
  qkRopeHeadDim: number;
  vHeadDim: number;
  nRoutedExperts: number;
  nSharedExperts: number;
  /** Width of the shared-expert SwiGLU: moeIntermediateSize × nSharedExperts (stored as one MLP). */
  sharedIntermediateSize: number;
  numExpertsPerTok: number;
  nGroup: number;
  topkGroup: number;
  routedScalingFactor: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** null: plain RoPE. */
  ropeScaling: YarnScaling | null;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenId: number | null;
  /** Every end-of-sequence id (config.json may list several); eosTokenId is the first. */
  eosTokenIds: readonly number[];
  /** Multi-token-prediction layers stored after the main layers; skipped on load. */
  numNextnPredictLayers: number;
  /** Stored FP8 block size when the checkpoint is FP8 ([128, 128] for V3), else null. */
  weightBlockSize: readonly [number, number] | null;
}
