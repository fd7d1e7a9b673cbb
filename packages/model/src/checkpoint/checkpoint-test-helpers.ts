/**
 * Test-only helpers: small synthetic checkpoints and in-place edits of safetensors headers,
 * to produce exactly one defect per test.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PRESETS } from "../synthetic/presets.ts";
import { writeSyntheticCheckpoint } from "../synthetic/write-synthetic-checkpoint.ts";

/** tiny's shape with 2 layers and 16 experts: every tensor kind, a fraction of a second to write. */
export const MICRO_CONFIG: Readonly<Record<string, unknown>> = {
  ...PRESETS.tiny,
  num_hidden_layers: 2,
  n_routed_experts: 16,
  num_experts_per_tok: 4,
};

export interface TempDir {
  path: string;
  remove(): Promise<void>;
}

export async function tempDir(prefix = "expertmesh-ckpt-"): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/** Writes a micro checkpoint into `dir` (fp8 + shards as asked) and returns the dir. */
export async function writeMicroCheckpoint(
  dir: string,
  opts: { fp8?: boolean; shards?: number; config?: Record<string, unknown> } = {},
): Promise<string> {
  await writeSyntheticCheckpoint({
    config: { ...MICRO_CONFIG, ...opts.config },
    seed: 7,
    outDir: dir,
    fp8: opts.fp8 ?? false,
    shards: opts.shards ?? 1,
  });
  return dir;
}

type Header = Record<
  string,
  { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>
>;

/** Rewrites a safetensors header in place (data bytes untouched; offsets stay relative to the new header end). */
export async function editHeader(file: string, edit: (header: Header) => void): Promise<void> {
  const bytes = await readFile(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8")) as Header;
  edit(header);
  const json = Buffer.from(JSON.stringify(header), "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  await writeFile(file, Buffer.concat([len, json, bytes.subarray(8 + n)]));
}

export async function editJson(file: string, edit: (value: Record<string, unknown>) => void): Promise<void> {
  const value = JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
  edit(value);
  await writeFile(file, JSON.stringify(value));
}
