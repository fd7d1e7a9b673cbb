import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { openCheckpoint } from "../checkpoint/checkpoint.ts";
import { MICRO_CONFIG, tempDir } from "../checkpoint/checkpoint-test-helpers.ts";
import type { TempDir } from "../checkpoint/checkpoint-test-helpers.ts";
import { expectedShape, expectedTensorNames, isFp8Linear } from "../checkpoint/expected-shape.ts";
import { parseModelConfig } from "../config/parse-model-config.ts";
import { PRESETS } from "./presets.ts";
import { writeSyntheticCheckpoint } from "./write-synthetic-checkpoint.ts";

const PERF_CONFIG = "/work/shared/bench/perf-v3.config.json";
const TINY_FIXTURE_CONFIG = "/work/shared/fixtures/tiny-v3/config.json";

describe("writeSyntheticCheckpoint", () => {
  let tmp: TempDir;
  let bf16Dir: string;
  let fp8Dir: string;
  before(async () => {
    tmp = await tempDir("expertmesh-synth-");
    bf16Dir = join(tmp.path, "tiny-bf16");
    fp8Dir = join(tmp.path, "tiny-fp8");
    const progress: number[] = [];
    const r1 = await writeSyntheticCheckpoint({
      preset: "tiny",
      seed: 11,
      outDir: bf16Dir,
      onProgress: (w, t) => progress.push(w / t),
    });
    assert.deepEqual(r1.files, ["model.safetensors"]);
    assert.equal(progress.at(-1), 1);
    assert.ok(progress.every((p, i) => i === 0 || p >= progress[i - 1]!));
    const r2 = await writeSyntheticCheckpoint({
      preset: "tiny",
      seed: 11,
      outDir: fp8Dir,
      fp8: true,
      shards: 3,
    });
    assert.equal(r2.files.length, 3);
  });
  after(async () => {
    await tmp.remove();
  });

  test("tiny preset is the tiny-v3 fixture's config", () => {
    if (!existsSync(TINY_FIXTURE_CONFIG)) return;
    assert.deepEqual(PRESETS.tiny, JSON.parse(readFileSync(TINY_FIXTURE_CONFIG, "utf8")));
  });

  test("bench preset equals shared/bench/perf-v3.config.json", () => {
    if (!existsSync(PERF_CONFIG)) return;
    assert.deepEqual(PRESETS.bench, JSON.parse(readFileSync(PERF_CONFIG, "utf8")));
  });

  test("every preset is a valid config", () => {
    for (const [name, raw] of Object.entries(PRESETS)) assert.ok(parseModelConfig(raw, name).numLayers > 0);
  });

  test("tiny BF16, one file: reopens with every shape matching the config", async () => {
    const ckpt = await openCheckpoint(bf16Dir);
    assert.deepEqual(ckpt.warnings, []);
    assert.equal(existsSync(join(bf16Dir, "model.safetensors.index.json")), false);
    assert.deepEqual(ckpt.tensorNames(), expectedTensorNames(ckpt.config));
    for (const name of ckpt.tensorNames()) {
      const info = ckpt.info(name);
      assert.deepEqual(info.shape, expectedShape(name, ckpt.config), name);
      assert.equal(info.dtype, name.endsWith("e_score_correction_bias") ? "F32" : "BF16", name);
    }
    const norm = await ckpt.readFloat32("model.layers.0.input_layernorm.weight");
    assert.ok(norm.every((v) => v === 1));
    const rms = (v: Float32Array): number => Math.sqrt(v.reduce((a, x) => a + x * x, 0) / v.length);
    const embedStd = rms(await ckpt.readFloat32("model.embed_tokens.weight"));
    assert.ok(Math.abs(embedStd - 0.02) < 0.001, `embed std ${embedStd}`); // initializer_range
    const headStd = rms(await ckpt.readFloat32("lm_head.weight"));
    assert.ok(Math.abs(headStd - 1 / 8) < 0.005, `lm_head std ${headStd}`); // 1/sqrt(hidden)
    const bias = await ckpt.readFloat32("model.layers.1.mlp.gate.e_score_correction_bias");
    assert.ok(new Set(bias).size > 200, "bias values differ per expert");
    await ckpt.close();
  });

  test("tiny FP8, 3 shards: real V3 layout, and it round-trips within e4m3 precision", async () => {
    const fp8 = await openCheckpoint(fp8Dir);
    const bf16 = await openCheckpoint(bf16Dir);
    assert.deepEqual(fp8.warnings, []);
    assert.deepEqual(fp8.config.weightBlockSize, [128, 128]);
    const index = JSON.parse(await readFile(join(fp8Dir, "model.safetensors.index.json"), "utf8")) as {
      metadata: { total_size: number };
      weight_map: Record<string, string>;
    };
    assert.deepEqual(
      new Set(Object.values(index.weight_map)),
      new Set([
        "model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors",
      ]),
    );
    assert.ok(index.metadata.total_size > 0);
    assert.deepEqual(fp8.tensorNames(), bf16.tensorNames());
    let fp8Count = 0;
    for (const name of fp8.tensorNames()) {
      const info = fp8.info(name);
      assert.deepEqual(info.shape, expectedShape(name, fp8.config), name);
      const wantFp8 = isFp8Linear(name);
      assert.equal(info.dtype === "F8_E4M3", wantFp8, name);
      assert.equal(`${name}_scale_inv` in index.weight_map, wantFp8, name);
      if (!wantFp8) continue;
      fp8Count++;
      // Same seed → same underlying values; compare dequantised FP8 with the BF16 copy.
      const a = await fp8.readFloat32(name);
      const b = await bf16.readFloat32(name);
      let amax = 0;
      for (const v of b) amax = Math.max(amax, Math.abs(v));
      const subnormalStep = (amax / 448) * 2 ** -9;
      for (let i = 0; i < a.length; i++) {
        // e4m3 half-ulp (2^-4 relative; subnormal step / 2) + bf16 half-ulp (2^-9 relative).
        const tol = Math.abs(b[i]!) * (1 / 16 + 1 / 256) + subnormalStep;
        if (Math.abs(a[i]! - b[i]!) > tol) assert.fail(`${name}[${i}]: fp8 ${a[i]} vs bf16 ${b[i]}`);
      }
    }
    assert.equal(fp8Count, 4 * 5 + 3 + 3 * (256 * 3 + 3)); // attention ×4 layers, dense MLP, experts + shared
    // Embeddings, router and lm_head stay BF16 and are identical.
    for (const name of ["model.embed_tokens.weight", "model.layers.2.mlp.gate.weight", "lm_head.weight"]) {
      assert.deepEqual(await fp8.readFloat32(name), await bf16.readFloat32(name));
    }
    await fp8.close();
    await bf16.close();
  });

  test("deterministic: same seed same bytes, other seed other values", async () => {
    const [first, again, other] = ["first", "again", "other"].map((d) => join(tmp.path, d)) as [
      string,
      string,
      string,
    ];
    await writeSyntheticCheckpoint({ config: MICRO_CONFIG, seed: 11, outDir: first });
    await writeSyntheticCheckpoint({ config: MICRO_CONFIG, seed: 11, outDir: again });
    assert.ok(
      (await readFile(join(again, "model.safetensors"))).equals(
        await readFile(join(first, "model.safetensors")),
      ),
    );
    await writeSyntheticCheckpoint({ config: MICRO_CONFIG, seed: 12, outDir: other });
    const a = await openCheckpoint(first);
    const b = await openCheckpoint(other);
    assert.notDeepEqual(await a.readFloat32("lm_head.weight"), await b.readFloat32("lm_head.weight"));
    await a.close();
    await b.close();
  });

  test("rewriting a directory replaces earlier shards", async () => {
    const dir = join(tmp.path, "rewrite");
    await writeSyntheticCheckpoint({ config: MICRO_CONFIG, seed: 1, outDir: dir, shards: 2 });
    await writeSyntheticCheckpoint({ config: MICRO_CONFIG, seed: 1, outDir: dir });
    assert.equal(existsSync(join(dir, "model.safetensors.index.json")), false);
    assert.equal(existsSync(join(dir, "model-00001-of-00002.safetensors")), false);
    const ckpt = await openCheckpoint(dir);
    await ckpt.close();
  });

  test("bad options are INVALID_ARGUMENT", async () => {
    const bad = async (opts: Parameters<typeof writeSyntheticCheckpoint>[0], re: RegExp): Promise<void> => {
      await assert.rejects(
        writeSyntheticCheckpoint(opts),
        (err: unknown) =>
          err instanceof ExpertMeshError && err.code === Code.INVALID_ARGUMENT && re.test(err.message),
      );
    };
    const outDir = join(tmp.path, "never");
    await bad({ seed: 1, outDir }, /exactly one of preset and config/);
    await bad({ preset: "tiny", seed: -1, outDir }, /seed must be a non-negative integer/);
    await bad({ preset: "tiny", seed: 1, outDir, shards: 0 }, /shards must be an integer in \[1, 2361\]/);
    await bad(
      { config: { ...PRESETS.tiny, scoring_func: "softmax" }, seed: 1, outDir },
      /config key "scoring_func"/,
    );
    assert.equal(existsSync(outDir), false);
  });
});
