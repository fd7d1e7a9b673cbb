/**
 * Writes a randomly initialised DeepSeek-V3-architecture checkpoint in the Hugging Face layout:
 * config.json, generation_config.json, model.safetensors (or N shards + index), and a byte-level
 * BPE tokenizer. BF16 by default; with `fp8`, every Linear except mlp.gate, embed_tokens and
 * lm_head is e4m3fn with an F32 `_scale_inv` per 128×128 block, as the real V3 release ships.
 * Tensors are generated and streamed to disk one at a time.
 */
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { expectedShape, expectedTensorNames, isFp8Linear } from "../checkpoint/expected-shape.ts";
import { INDEX_FILE, SINGLE_FILE } from "../checkpoint/checkpoint.ts";
import type { ModelConfig } from "../config/model-config.ts";
import { parseModelConfig } from "../config/parse-model-config.ts";
import { encodeBf16, quantizeE4m3Blocks } from "./encode.ts";
import { PRESETS } from "./presets.ts";
import type { PresetName } from "./presets.ts";
import { Prng } from "./prng.ts";
import { SafetensorsWriter, tensorByteLength } from "./safetensors-writer.ts";
import type { TensorSpec } from "./safetensors-writer.ts";
import { buildSyntheticTokenizer } from "./synthetic-tokenizer.ts";

export interface SyntheticCheckpointOptions {
  /** A named shape; exactly one of `preset` and `config` must be given. */
  preset?: PresetName;
  /** A Hugging Face config.json object (validated like any checkpoint's). */
  config?: Readonly<Record<string, unknown>>;
  seed: number;
  outDir: string;
  /** Store Linear weights as block-scaled e4m3fn (default false: BF16). */
  fp8?: boolean;
  /** Number of safetensors files (default 1: model.safetensors without an index). */
  shards?: number;
  /** Called after each tensor with bytes of tensor data written so far and in all. */
  onProgress?: (writtenBytes: number, totalBytes: number) => void;
}

export interface SyntheticCheckpointResult {
  outDir: string;
  config: ModelConfig;
  /** Safetensors file names, in order. */
  files: string[];
  tensorCount: number;
  /** Bytes of tensor data (index metadata.total_size). */
  totalBytes: number;
}

const FP8_QUANTIZATION = {
  activation_scheme: "dynamic",
  fmt: "e4m3",
  quant_method: "fp8",
  weight_block_size: [128, 128],
} as const;

interface PlannedTensor {
  weight: TensorSpec;
  /** F32 [ceil(out/br), ceil(in/bc)] for an FP8 weight. */
  scale?: TensorSpec;
  bytes: number;
}

export async function writeSyntheticCheckpoint(
  options: SyntheticCheckpointOptions,
): Promise<SyntheticCheckpointResult> {
  const { seed, outDir } = options;
  if ((options.preset === undefined) === (options.config === undefined)) {
    throw new ExpertMeshError(Code.INVALID_ARGUMENT, "give exactly one of preset and config");
  }
  if (options.preset !== undefined && !(options.preset in PRESETS)) {
    throw new ExpertMeshError(
      Code.INVALID_ARGUMENT,
      `unknown preset "${options.preset}" (tiny, small, bench)`,
    );
  }
  if (!Number.isSafeInteger(seed) || seed < 0)
    throw new ExpertMeshError(Code.INVALID_ARGUMENT, `seed must be a non-negative integer, got ${seed}`);
  const shards = options.shards ?? 1;
  const fp8 = options.fp8 ?? false;

  const rawConfig: Record<string, unknown> = { ...(options.config ?? PRESETS[options.preset!]) };
  if (fp8) rawConfig["quantization_config"] ??= FP8_QUANTIZATION;
  else delete rawConfig["quantization_config"];
  const config = parseModelConfig(
    rawConfig,
    options.preset === undefined ? "config" : `preset ${options.preset}`,
  );

  const plan = planTensors(config, fp8);
  if (!Number.isSafeInteger(shards) || shards < 1 || shards > plan.length) {
    throw new ExpertMeshError(
      Code.INVALID_ARGUMENT,
      `shards must be an integer in [1, ${plan.length}], got ${shards}`,
    );
  }
  const groups = splitIntoShards(plan, shards);
  const files = groups.map((_, i) =>
    shards === 1
      ? SINGLE_FILE
      : `model-${String(i + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`,
  );
  const totalBytes = plan.reduce((a, t) => a + t.bytes, 0);

  await mkdir(outDir, { recursive: true });
  await removeStaleWeights(outDir);
  await writeJson(join(outDir, "config.json"), rawConfig);
  await writeJson(join(outDir, "generation_config.json"), {
    _from_model_config: true,
    bos_token_id: config.bosTokenId,
    eos_token_id: config.eosTokenId,
    do_sample: false,
  });
  const { tokenizer, tokenizerConfig } = buildSyntheticTokenizer({
    vocabSize: config.vocabSize,
    bosTokenId: config.bosTokenId,
    eosTokenId: config.eosTokenId,
    modelMaxLength: config.maxPositionEmbeddings,
  });
  await writeJson(join(outDir, "tokenizer.json"), tokenizer);
  await writeJson(join(outDir, "tokenizer_config.json"), tokenizerConfig);

  const initStd = typeof rawConfig["initializer_range"] === "number" ? rawConfig["initializer_range"] : 0.02;
  const [blockRows, blockCols] = config.weightBlockSize ?? [128, 128];
  const metadata = { format: "pt", generator: "expertmesh synthetic", seed: String(seed) };
  const weightMap: Record<string, string> = {};
  let written = 0;
  for (const [i, group] of groups.entries()) {
    const fileName = files[i]!;
    const specs = group.flatMap((t) => (t.scale === undefined ? [t.weight] : [t.weight, t.scale]));
    const writer = await SafetensorsWriter.create(join(outDir, fileName), specs, metadata);
    try {
      for (const t of group) {
        const values = syntheticValues(t.weight, seed, initStd);
        const bytes = new Uint8Array(tensorByteLength(t.weight));
        if (t.weight.dtype === "F32") bytes.set(new Uint8Array(values.buffer));
        else if (t.weight.dtype === "BF16") encodeBf16(values, bytes);
        else {
          const [rows, cols] = t.weight.shape as [number, number];
          const scales = quantizeE4m3Blocks(values, rows, cols, blockRows, blockCols, bytes);
          await writer.write(t.weight.name, bytes);
          weightMap[t.weight.name] = fileName;
          await writer.write(t.scale!.name, new Uint8Array(scales.buffer));
          weightMap[t.scale!.name] = fileName;
          written += t.bytes;
          options.onProgress?.(written, totalBytes);
          continue;
        }
        await writer.write(t.weight.name, bytes);
        weightMap[t.weight.name] = fileName;
        written += t.bytes;
        options.onProgress?.(written, totalBytes);
      }
    } finally {
      await writer.close();
    }
  }
  if (shards > 1) {
    const sorted = Object.fromEntries(
      Object.entries(weightMap).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    );
    await writeJson(join(outDir, INDEX_FILE), { metadata: { total_size: totalBytes }, weight_map: sorted });
  }
  return { outDir, config, files, tensorCount: plan.length, totalBytes };
}

function planTensors(config: ModelConfig, fp8: boolean): PlannedTensor[] {
  const [blockRows, blockCols] = config.weightBlockSize ?? [128, 128];
  return expectedTensorNames(config).map((name) => {
    const shape = expectedShape(name, config)!;
    if (name.endsWith("e_score_correction_bias")) {
      const weight = { name, dtype: "F32", shape };
      return { weight, bytes: tensorByteLength(weight) };
    }
    if (fp8 && isFp8Linear(name)) {
      const weight = { name, dtype: "F8_E4M3", shape };
      const scale = {
        name: `${name}_scale_inv`,
        dtype: "F32",
        shape: [Math.ceil(shape[0]! / blockRows), Math.ceil(shape[1]! / blockCols)],
      };
      return { weight, scale, bytes: tensorByteLength(weight) + tensorByteLength(scale) };
    }
    const weight = { name, dtype: "BF16", shape };
    return { weight, bytes: tensorByteLength(weight) };
  });
}

/** Consecutive runs of roughly equal bytes (each shard non-empty; model order kept). */
function splitIntoShards(plan: readonly PlannedTensor[], shards: number): PlannedTensor[][] {
  const total = plan.reduce((a, t) => a + t.bytes, 0);
  const groups: PlannedTensor[][] = [[]];
  let before = 0; // bytes in closed groups
  let inGroup = 0;
  for (const [i, t] of plan.entries()) {
    const remainingTensors = plan.length - i;
    const openGroups = shards - groups.length;
    const current = groups[groups.length - 1]!;
    // Close the current group when it has reached its share, or when every later tensor must start a group.
    if (
      current.length > 0 &&
      openGroups > 0 &&
      (before + inGroup >= (total * groups.length) / shards || remainingTensors <= openGroups)
    ) {
      groups.push([]);
      before += inGroup;
      inGroup = 0;
    }
    groups[groups.length - 1]!.push(t);
    inGroup += t.bytes;
  }
  return groups;
}

/**
 * Seeded values of one tensor: norms 1, the routing bias N(0, (std/2)²), the router and lm_head
 * N(0, 1/in_features) — they read RMS-normalised inputs, so their logits get unit variance and
 * expert choices and greedy tokens are decided by clear margins, not by rounding — and every
 * other weight N(0, std²) with std = initializer_range.
 */
function syntheticValues(spec: TensorSpec, seed: number, std: number): Float32Array {
  const count = spec.shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(count);
  const name = spec.name;
  if (/(layernorm|norm)\.weight$/.test(name)) return values.fill(1);
  let sigma = std;
  if (name.endsWith("e_score_correction_bias")) sigma = std / 2;
  else if (name.endsWith("mlp.gate.weight") || name === "lm_head.weight")
    sigma = 1 / Math.sqrt(spec.shape[1]!);
  new Prng(seed, name).fillNormal(values, sigma);
  return values;
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`);
}

/** Weights of an earlier run in the same directory would shadow or confuse this one's. */
async function removeStaleWeights(dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    if (name === INDEX_FILE || name === SINGLE_FILE || /^model-\d+-of-\d+\.safetensors$/.test(name))
      await rm(join(dir, name));
  }
}
