/**
 * Read-only view of a Hugging Face DeepSeek-V3 checkpoint directory: config.json plus
 * `model.safetensors` or shards listed in `model.safetensors.index.json`. Everything that can
 * be checked without reading weights (dtypes, shapes against the config, FP8 scale grids,
 * completeness) is checked at open, so a bad checkpoint fails at startup with a message
 * naming the file and the tensor. Tensors are then read one at a time by byte range.
 */
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import type { ModelConfig } from "../config/model-config.ts";
import { parseModelConfigWithWarnings } from "../config/parse-model-config.ts";
import { assertLittleEndianHost, decodeBf16, decodeF16, decodeFp8Block } from "./dtype-decode.ts";
import { expectedShape, expectedTensorNames, layerIndexOf } from "./expected-shape.ts";
import { openSafetensorsFile, readRange } from "./safetensors-file.ts";
import type { RawTensorEntry, SafetensorsFile } from "./safetensors-file.ts";

export type StorageDtype = "F32" | "BF16" | "F16" | "F8_E4M3";

export interface TensorInfo {
  name: string;
  dtype: StorageDtype;
  shape: number[];
  /** File name relative to the checkpoint directory. */
  file: string;
  /** Absolute position of the tensor's bytes in `file`. */
  byteOffset: number;
  byteLength: number;
}

export interface Checkpoint {
  readonly dir: string;
  /** Parsed and validated (see config-keys.ts). */
  readonly config: ModelConfig;
  readonly rawConfig: Readonly<Record<string, unknown>>;
  /** Unknown config keys and unrecognised tensors, ignored (one line each). */
  readonly warnings: readonly string[];
  /** Excludes `*_scale_inv` companions and ignored (MTP) layers. */
  tensorNames(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  /** float32 values of a tensor; BF16/F16 widened exactly; F8_E4M3 dequantised with `<name>_scale_inv` blocks. */
  readFloat32(name: string): Promise<Float32Array>;
  close(): Promise<void>;
}

export interface OpenCheckpointOptions {
  /** Fail at open when a tensor the config implies is absent (default true). */
  requireAll?: boolean;
}

export const INDEX_FILE = "model.safetensors.index.json";
export const SINGLE_FILE = "model.safetensors";
const SCALE_SUFFIX = "_scale_inv";
const STORAGE_DTYPES: ReadonlySet<string> = new Set<StorageDtype>(["F32", "BF16", "F16", "F8_E4M3"]);
const DTYPE_BYTES: Readonly<Record<StorageDtype, number>> = { F32: 4, BF16: 2, F16: 2, F8_E4M3: 1 };
/** Raw bytes decoded per read: bounds the transient buffer next to the float32 result. */
const CHUNK_BYTES = 16 * 1024 * 1024;
/** fs.read takes at most 2 GiB - 1 per call. */
const MAX_READ_BYTES = 1024 * 1024 * 1024;

function failed(message: string, details: Record<string, string>): ExpertMeshError {
  return new ExpertMeshError(Code.FAILED_PRECONDITION, message, { details });
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function readJson(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      `${path}: cannot read ${what} (${(err as NodeJS.ErrnoException).code ?? "error"})`,
      {
        details: { file: path },
        cause: err,
      },
    );
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ExpertMeshError(Code.FAILED_PRECONDITION, `${path}: ${what} is not valid JSON`, {
      details: { file: path },
      cause: err,
    });
  }
}

interface Located {
  file: SafetensorsFile;
  /** Relative file name. */
  fileName: string;
  entry: RawTensorEntry;
}

interface Loaded {
  info: TensorInfo;
  file: SafetensorsFile;
  /** The `_scale_inv` companion of an F8_E4M3 weight. */
  scale?: Located;
}

/** Opens a checkpoint directory and validates it against its config (see module comment). */
export async function openCheckpoint(dir: string, options: OpenCheckpointOptions = {}): Promise<Checkpoint> {
  assertLittleEndianHost();
  const configPath = join(dir, "config.json");
  if (!(await exists(configPath)))
    throw failed(`${dir}: not a checkpoint directory (no config.json)`, { file: configPath });
  const rawConfig = await readJson(configPath, "config.json");
  const { config, warnings } = parseModelConfigWithWarnings(rawConfig, configPath);

  const files = new Map<string, SafetensorsFile>();
  try {
    const located = await locateTensors(dir, files);
    const tensors = validate(dir, config, located, warnings, options.requireAll ?? true);
    return new SafetensorsCheckpoint(
      dir,
      config,
      rawConfig as Record<string, unknown>,
      warnings,
      tensors,
      files,
    );
  } catch (err) {
    await Promise.all([...files.values()].map((f) => f.handle.close()));
    throw err;
  }
}

/** name → where its bytes are, across the single file or every shard of the index. */
async function locateTensors(
  dir: string,
  files: Map<string, SafetensorsFile>,
): Promise<Map<string, Located>> {
  const located = new Map<string, Located>();
  const openFile = async (fileName: string, forTensor?: string): Promise<SafetensorsFile> => {
    let f = files.get(fileName);
    if (f !== undefined) return f;
    const path = join(dir, fileName);
    if (!(await exists(path))) {
      throw failed(
        `${join(dir, INDEX_FILE)}: points to missing file ${fileName}${forTensor === undefined ? "" : ` (for tensor "${forTensor}")`}`,
        {
          file: path,
          ...(forTensor === undefined ? {} : { tensor: forTensor }),
        },
      );
    }
    f = await openSafetensorsFile(path);
    files.set(fileName, f);
    return f;
  };

  const indexPath = join(dir, INDEX_FILE);
  if (await exists(indexPath)) {
    const index = await readJson(indexPath, "safetensors index");
    const weightMap = (index as { weight_map?: unknown } | null)?.weight_map;
    if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)) {
      throw failed(`${indexPath}: no "weight_map" object`, { file: indexPath });
    }
    for (const [name, fileName] of Object.entries(weightMap as Record<string, unknown>)) {
      if (typeof fileName !== "string" || fileName.includes("/") || fileName.includes("\\")) {
        throw failed(
          `${indexPath}: tensor "${name}" maps to ${JSON.stringify(fileName)}, not a file name in the directory`,
          { file: indexPath, tensor: name },
        );
      }
      const file = await openFile(fileName, name);
      const entry = file.entries.get(name);
      if (entry === undefined) {
        throw failed(`${file.path}: missing tensor "${name}" (the index says this file holds it)`, {
          file: file.path,
          tensor: name,
        });
      }
      located.set(name, { file, fileName, entry });
    }
    return located;
  }
  const single = join(dir, SINGLE_FILE);
  if (!(await exists(single)))
    throw failed(`${dir}: no ${SINGLE_FILE} and no ${INDEX_FILE}`, { file: single });
  const file = await openFile(SINGLE_FILE);
  for (const [name, entry] of file.entries) located.set(name, { file, fileName: SINGLE_FILE, entry });
  return located;
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

function validate(
  dir: string,
  config: ModelConfig,
  located: Map<string, Located>,
  warnings: string[],
  requireAll: boolean,
): Map<string, Loaded> {
  const [blockRows, blockCols] = config.weightBlockSize ?? [128, 128];
  const tensors = new Map<string, Loaded>();
  for (const [name, loc] of located) {
    if (name.endsWith(SCALE_SUFFIX)) {
      if (!located.has(name.slice(0, -SCALE_SUFFIX.length)))
        warnings.push(`${loc.file.path}: scale "${name}" has no weight; ignored`);
      continue;
    }
    const layer = layerIndexOf(name);
    if (layer !== undefined && layer >= config.numLayers) {
      // MTP layers (num_nextn_predict_layers) follow the main layers; the main model never reads them.
      if (layer >= config.numLayers + config.numNextnPredictLayers)
        warnings.push(`${loc.file.path}: tensor "${name}" beyond the main and MTP layers; ignored`);
      continue;
    }
    const { entry, file } = loc;
    const where = `${file.path}: tensor "${name}"`;
    const details = { file: file.path, tensor: name };
    const want = expectedShape(name, config);
    if (!STORAGE_DTYPES.has(entry.dtype)) {
      if (want === undefined) {
        warnings.push(`${where} has dtype ${entry.dtype} and is not part of the model; ignored`);
        continue;
      }
      throw failed(
        `${where} has dtype ${entry.dtype}; expected a float weight (F32, BF16, F16 or F8_E4M3)`,
        details,
      );
    }
    if (want === undefined)
      warnings.push(`${where} is not part of the DeepSeek-V3 architecture; readable but unused`);
    else if (shapeText(want) !== shapeText(entry.shape)) {
      throw failed(
        `${where} has shape ${shapeText(entry.shape)}, but config.json implies ${shapeText(want)}`,
        details,
      );
    }
    const dtype = entry.dtype as StorageDtype;
    const loaded: Loaded = {
      info: {
        name,
        dtype,
        shape: entry.shape,
        file: loc.fileName,
        byteOffset: entry.byteOffset,
        byteLength: entry.byteLength,
      },
      file,
    };
    if (dtype === "F8_E4M3") {
      const scaleName = name + SCALE_SUFFIX;
      const scale = located.get(scaleName);
      if (scale === undefined)
        throw failed(`${where} is F8_E4M3 but has no "${scaleName}" to dequantise it`, details);
      if (entry.shape.length !== 2)
        throw failed(
          `${where} is F8_E4M3 with shape ${shapeText(entry.shape)}; block scales need a 2-D weight`,
          details,
        );
      const grid = [Math.ceil(entry.shape[0]! / blockRows), Math.ceil(entry.shape[1]! / blockCols)];
      const scaleWhere = `${scale.file.path}: tensor "${scaleName}"`;
      if (scale.entry.dtype !== "F32" && scale.entry.dtype !== "BF16" && scale.entry.dtype !== "F16") {
        throw failed(`${scaleWhere} has dtype ${scale.entry.dtype}; expected F32 block scales`, {
          file: scale.file.path,
          tensor: scaleName,
        });
      }
      if (shapeText(grid) !== shapeText(scale.entry.shape)) {
        throw failed(
          `${scaleWhere} has shape ${shapeText(scale.entry.shape)}, but ${shapeText(entry.shape)} in ${blockRows}×${blockCols} blocks needs ${shapeText(grid)}`,
          { file: scale.file.path, tensor: scaleName },
        );
      }
      loaded.scale = scale;
    }
    tensors.set(name, loaded);
  }
  if (requireAll) {
    for (const name of expectedTensorNames(config)) {
      if (!tensors.has(name)) {
        throw failed(`${dir}: missing tensor "${name}" (no safetensors file of the checkpoint holds it)`, {
          tensor: name,
        });
      }
    }
  }
  // Model order first (what a loader iterates), then anything extra.
  const ordered = new Map<string, Loaded>();
  for (const name of expectedTensorNames(config)) {
    const t = tensors.get(name);
    if (t !== undefined) ordered.set(name, t);
  }
  for (const [name, t] of tensors) if (!ordered.has(name)) ordered.set(name, t);
  return ordered;
}

class SafetensorsCheckpoint implements Checkpoint {
  private closed = false;
  private spareChunk: Uint8Array | null = null;

  constructor(
    readonly dir: string,
    readonly config: ModelConfig,
    readonly rawConfig: Readonly<Record<string, unknown>>,
    readonly warnings: readonly string[],
    private readonly tensors: Map<string, Loaded>,
    private readonly files: Map<string, SafetensorsFile>,
  ) {}

  tensorNames(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const { info } = this.get(name);
    return { ...info, shape: [...info.shape] };
  }

  private get(name: string): Loaded {
    const t = this.tensors.get(name);
    if (t === undefined) throw failed(`${this.dir}: checkpoint has no tensor "${name}"`, { tensor: name });
    return t;
  }

  async readFloat32(name: string): Promise<Float32Array> {
    if (this.closed) throw failed(`${this.dir}: checkpoint is closed`, { tensor: name });
    const t = this.get(name);
    const { info } = t;
    const count = info.byteLength / DTYPE_BYTES[info.dtype];
    const out = new Float32Array(count);
    if (info.dtype === "F32") {
      // Straight into the result: no intermediate buffer at all.
      const bytes = new Uint8Array(out.buffer);
      for (let done = 0; done < info.byteLength; done += MAX_READ_BYTES) {
        const n = Math.min(MAX_READ_BYTES, info.byteLength - done);
        await readRange(t.file, name, bytes.subarray(done), n, info.byteOffset + done);
      }
      return out;
    }
    let scales: Float32Array | undefined;
    if (t.scale !== undefined) scales = await this.readScale(t.scale);
    const elementBytes = DTYPE_BYTES[info.dtype];
    const chunk = this.takeChunk();
    const cols = info.shape[1] ?? 1;
    const [blockRows, blockCols] = this.config.weightBlockSize ?? [128, 128];
    for (let done = 0; done < info.byteLength; done += CHUNK_BYTES) {
      const n = Math.min(CHUNK_BYTES, info.byteLength - done);
      await readRange(t.file, name, chunk, n, info.byteOffset + done);
      const start = done / elementBytes;
      const k = n / elementBytes;
      if (info.dtype === "BF16") decodeBf16(chunk, k, out, start);
      else if (info.dtype === "F16") decodeF16(chunk, k, out, start);
      else decodeFp8Block(chunk, k, out, start, cols, scales!, blockRows, blockCols);
    }
    this.spareChunk = chunk;
    return out;
  }

  /**
   * The raw-byte buffer of one read: reused across reads (fresh 16 MiB allocations cost page
   * faults on every tensor); concurrent reads each get their own.
   */
  private takeChunk(): Uint8Array {
    const chunk = this.spareChunk ?? new Uint8Array(CHUNK_BYTES);
    this.spareChunk = null;
    return chunk;
  }

  private async readScale(scale: Located): Promise<Float32Array> {
    const { entry } = scale;
    const raw = new Uint8Array(entry.byteLength);
    await readRange(scale.file, entry.name, raw, entry.byteLength, entry.byteOffset);
    if (entry.dtype === "F32") return new Float32Array(raw.buffer);
    const out = new Float32Array(entry.byteLength / 2);
    if (entry.dtype === "BF16") decodeBf16(raw, out.length, out, 0);
    else decodeF16(raw, out.length, out, 0);
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.spareChunk = null;
    await Promise.all([...this.files.values()].map((f) => f.handle.close()));
  }
}
