import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { openCheckpoint } from "./checkpoint.ts";
import type { Checkpoint } from "./checkpoint.ts";
import { expectedTensorNames } from "./expected-shape.ts";

const FIXTURES = "/work/shared/fixtures";
const TINY = join(FIXTURES, "tiny-v3");
const TINY_FP8 = join(FIXTURES, "tiny-v3-fp8");

/** Independent reading of a tensor's raw bytes: whole-file read, fine for a 10 MB fixture. */
function rawTensor(file: string, name: string): { dtype: string; shape: number[]; bytes: Buffer } {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const e = header[name];
  assert.ok(e, `${name} in ${file}`);
  return {
    dtype: e.dtype,
    shape: e.shape,
    bytes: buf.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]),
  };
}

/** e4m3fn by its definition (not the reader's table). */
function e4m3(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const exp = (b >> 3) & 15;
  const man = b & 7;
  if (exp === 15 && man === 7) return NaN;
  return sign * (exp === 0 ? (man / 8) * 2 ** -6 : (1 + man / 8) * 2 ** (exp - 7));
}

describe("openCheckpoint on tiny-v3 (BF16, one file)", () => {
  let ckpt: Checkpoint;
  before(async () => {
    ckpt = await openCheckpoint(TINY);
  });
  after(async () => {
    await ckpt.close();
  });

  test("config, tensor count and model order", () => {
    assert.equal(ckpt.config.hiddenSize, 64);
    assert.equal(ckpt.config.nRoutedExperts, 256);
    assert.equal(ckpt.config.weightBlockSize, null);
    assert.deepEqual(ckpt.warnings, []);
    assert.equal(ckpt.tensorNames().length, 2361); // the README's count
    assert.deepEqual(ckpt.tensorNames(), expectedTensorNames(ckpt.config));
  });

  test("shapes and dtypes as stored", () => {
    assert.deepEqual(ckpt.info("model.embed_tokens.weight").shape, [512, 64]);
    assert.equal(ckpt.info("model.embed_tokens.weight").dtype, "BF16");
    assert.deepEqual(ckpt.info("model.layers.0.self_attn.q_b_proj.weight").shape, [4 * 24, 48]);
    assert.deepEqual(ckpt.info("model.layers.0.self_attn.kv_a_proj_with_mqa.weight").shape, [32 + 8, 64]);
    assert.deepEqual(ckpt.info("model.layers.3.mlp.experts.255.down_proj.weight").shape, [64, 32]);
    const bias = ckpt.info("model.layers.1.mlp.gate.e_score_correction_bias");
    assert.equal(bias.dtype, "F32");
    assert.deepEqual(bias.shape, [256]);
    assert.equal(ckpt.has("model.layers.0.mlp.gate.weight"), false); // layer 0 is dense
  });

  test("BF16 widened exactly (bits << 16)", async () => {
    const name = "model.layers.2.self_attn.kv_b_proj.weight";
    const raw = rawTensor(join(TINY, "model.safetensors"), name);
    const got = await ckpt.readFloat32(name);
    assert.equal(got.length, raw.bytes.length / 2);
    const want = new Float32Array(
      new Uint32Array(Array.from({ length: got.length }, (_, i) => raw.bytes.readUInt16LE(2 * i) << 16))
        .buffer,
    );
    assert.deepEqual(got, want);
    assert.ok(got.some((v) => v !== 0));
  });

  test("F32 read as stored", async () => {
    const name = "model.layers.3.mlp.gate.e_score_correction_bias";
    const raw = rawTensor(join(TINY, "model.safetensors"), name);
    const got = await ckpt.readFloat32(name);
    assert.deepEqual(
      got,
      new Float32Array(raw.bytes.buffer.slice(raw.bytes.byteOffset, raw.bytes.byteOffset + raw.bytes.length)),
    );
  });

  test("an unknown tensor name is a clear error", () => {
    assert.throws(
      () => ckpt.info("model.layers.0.mlp.experts.0.up_proj.weight"),
      /has no tensor "model\.layers\.0\.mlp\.experts\.0\.up_proj\.weight"/,
    );
  });
});

describe("openCheckpoint on tiny-v3-fp8 (FP8 block scales, two shards)", () => {
  let ckpt: Checkpoint;
  before(async () => {
    ckpt = await openCheckpoint(TINY_FP8);
  });
  after(async () => {
    await ckpt.close();
  });

  test("sharded index: every tensor found, scales hidden, files recorded", () => {
    assert.deepEqual(ckpt.config.weightBlockSize, [128, 128]);
    const index = JSON.parse(readFileSync(join(TINY_FP8, "model.safetensors.index.json"), "utf8")) as {
      weight_map: Record<string, string>;
    };
    const all = Object.keys(index.weight_map);
    const scales = all.filter((n) => n.endsWith("_scale_inv"));
    assert.equal(ckpt.tensorNames().length, all.length - scales.length);
    assert.equal(ckpt.tensorNames().length, 1579);
    assert.ok(!ckpt.tensorNames().some((n) => n.endsWith("_scale_inv")));
    assert.equal(ckpt.info("lm_head.weight").file, "model-00002-of-00002.safetensors");
    assert.equal(ckpt.info("model.embed_tokens.weight").file, "model-00001-of-00002.safetensors");
    assert.equal(ckpt.info("model.layers.0.mlp.down_proj.weight").dtype, "F8_E4M3");
    assert.equal(ckpt.info("model.layers.1.mlp.gate.weight").dtype, "BF16"); // the router stays BF16
  });

  test("FP8 dequantised per 128×128 block: a full block and a partial edge block", async () => {
    const name = "model.layers.0.mlp.down_proj.weight"; // [160, 320]: scale grid [2, 3]
    const file = join(TINY_FP8, ckpt.info(name).file);
    const w = rawTensor(file, name);
    const s = rawTensor(file, `${name}_scale_inv`);
    assert.deepEqual(w.shape, [160, 320]);
    assert.deepEqual(s.shape, [2, 3]);
    const scale = (bi: number, bj: number): number => s.bytes.readFloatLE(4 * (bi * 3 + bj));
    const got = await ckpt.readFloat32(name);
    const check = (rows: [number, number], cols: [number, number], bi: number, bj: number): number => {
      let n = 0;
      for (let i = rows[0]; i < rows[1]; i++) {
        for (let j = cols[0]; j < cols[1]; j++, n++) {
          const want = Math.fround(e4m3(w.bytes[i * 320 + j]!) * scale(bi, bj));
          if (got[i * 320 + j] !== want) assert.fail(`[${i}][${j}]: ${got[i * 320 + j]} != ${want}`);
        }
      }
      return n;
    };
    assert.equal(check([0, 128], [0, 128], 0, 0), 128 * 128); // full block
    assert.equal(check([128, 160], [256, 320], 1, 2), 32 * 64); // partial in both dimensions
    assert.notEqual(scale(0, 0), scale(1, 2));
  });

  test("FP8 weight in the second shard (q_a_proj [136, 160]: grid [2, 2])", async () => {
    const name = "model.layers.2.self_attn.q_a_proj.weight";
    const info = ckpt.info(name);
    assert.equal(info.file, "model-00002-of-00002.safetensors");
    const file = join(TINY_FP8, info.file);
    const w = rawTensor(file, name);
    const s = rawTensor(file, `${name}_scale_inv`);
    assert.deepEqual(s.shape, [2, 2]);
    const got = await ckpt.readFloat32(name);
    for (const [i, j] of [
      [0, 0],
      [127, 127],
      [128, 128],
      [135, 159],
      [135, 0],
      [0, 159],
    ] as const) {
      const sc = s.bytes.readFloatLE(4 * (Math.floor(i / 128) * 2 + Math.floor(j / 128)));
      assert.equal(got[i * 160 + j], Math.fround(e4m3(w.bytes[i * 160 + j]!) * sc), `[${i}][${j}]`);
    }
  });

  test("every tensor reads with finite values", async () => {
    for (const name of ckpt.tensorNames()) {
      const v = await ckpt.readFloat32(name);
      assert.equal(
        v.length,
        ckpt.info(name).shape.reduce((a, b) => a * b, 1),
      );
      for (const x of v) if (!Number.isFinite(x)) assert.fail(`${name} has ${x}`);
    }
  });
});

test("reads after close fail clearly", async () => {
  const ckpt = await openCheckpoint(TINY);
  await ckpt.close();
  await assert.rejects(ckpt.readFloat32("model.norm.weight"), /checkpoint is closed/);
});
