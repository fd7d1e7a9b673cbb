/**
 * A Checkpoint that remembers which tensors were read through it. The attention node loads the
 * model through one so that it can prove (log line, metric) that it read no routed-expert
 * weight: those live on the expert-workers only.
 */
import type { Checkpoint, ModelConfig, TensorInfo } from "@expertmesh/model";

/** `model.layers.<l>.mlp.experts.<e>.…`: a routed expert's weight (or its FP8 scale). */
const ROUTED_EXPERT = /^model\.layers\.\d+\.mlp\.experts\.\d+\./;

export function isRoutedExpertTensor(name: string): boolean {
  return ROUTED_EXPERT.test(name);
}

export interface TensorReadCounts {
  /** Distinct tensors read. */
  readonly total: number;
  /** Of them, routed-expert tensors (`mlp.experts.*`). */
  readonly routedExpert: number;
}

export class RecordingCheckpoint implements Checkpoint {
  readonly #inner: Checkpoint;
  readonly #read = new Set<string>();

  constructor(inner: Checkpoint) {
    this.#inner = inner;
  }

  get dir(): string {
    return this.#inner.dir;
  }

  get config(): ModelConfig {
    return this.#inner.config;
  }

  get rawConfig(): Readonly<Record<string, unknown>> {
    return this.#inner.rawConfig;
  }

  get warnings(): readonly string[] {
    return this.#inner.warnings;
  }

  tensorNames(): string[] {
    return this.#inner.tensorNames();
  }

  has(name: string): boolean {
    return this.#inner.has(name);
  }

  info(name: string): TensorInfo {
    return this.#inner.info(name);
  }

  readFloat32(name: string): Promise<Float32Array> {
    this.#read.add(name);
    return this.#inner.readFloat32(name);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  /** Names read so far, in first-read order. */
  tensorsRead(): string[] {
    return [...this.#read];
  }

  counts(): TensorReadCounts {
    let routedExpert = 0;
    for (const name of this.#read) if (isRoutedExpertTensor(name)) routedExpert++;
    return { total: this.#read.size, routedExpert };
  }
}
