import assert from "node:assert/strict";
import { mkdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { openCheckpoint } from "./checkpoint.ts";
import { editHeader, editJson, tempDir, writeMicroCheckpoint } from "./checkpoint-test-helpers.ts";
import type { TempDir } from "./checkpoint-test-helpers.ts";

/** Asserts a FAILED_PRECONDITION whose message matches every pattern. */
async function rejectsWith(dir: string, ...patterns: RegExp[]): Promise<void> {
  await assert.rejects(openCheckpoint(dir), (err: unknown) => {
    assert.ok(err instanceof ExpertMeshError, String(err));
    assert.equal(err.code, Code.FAILED_PRECONDITION, err.message);
    for (const p of patterns) assert.match(err.message, p);
    return true;
  });
}

const SHARD3 = "model-00003-of-00003.safetensors";
const esc = (s: string): RegExp => new RegExp(s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));

describe("checkpoint defects give clear errors naming file and tensor", () => {
  let tmp: TempDir;
  let n = 0;
  /** A fresh single-file BF16 or sharded FP8 micro checkpoint per test. */
  const fresh = async (fp8 = false): Promise<string> =>
    writeMicroCheckpoint(join(tmp.path, `c${n++}`), fp8 ? { fp8: true, shards: 3 } : {});

  before(async () => {
    tmp = await tempDir();
  });
  after(async () => {
    await tmp.remove();
  });

  test("the micro checkpoints themselves open", async () => {
    for (const fp8 of [false, true]) {
      const ckpt = await openCheckpoint(await fresh(fp8));
      assert.deepEqual(ckpt.warnings, []);
      await ckpt.close();
    }
  });

  test("truncated data", async () => {
    const dir = await fresh();
    const file = join(dir, "model.safetensors");
    await truncate(file, (await stat(file)).size - 10);
    await rejectsWith(
      dir,
      esc(file),
      /truncated safetensors file: tensor "lm_head\.weight" ends at byte \d+, file has \d+/,
    );
  });

  test("truncated header", async () => {
    const dir = await fresh();
    const file = join(dir, "model.safetensors");
    await truncate(file, 100);
    await rejectsWith(dir, esc(file), /truncated safetensors file: header needs \d+ bytes, file has 100/);
  });

  test("absurd header length", async () => {
    const dir = await fresh();
    const file = join(dir, "model.safetensors");
    const bytes = await readFile(file);
    bytes.writeBigUInt64LE(0x0123456789abn, 0);
    await writeFile(file, bytes);
    await rejectsWith(dir, esc(file), /header length \d+ is absurd/);
  });

  test("missing tensor in a single file", async () => {
    const dir = await fresh();
    await editHeader(
      join(dir, "model.safetensors"),
      (h) => delete h["model.layers.1.mlp.experts.3.up_proj.weight"],
    );
    await rejectsWith(
      dir,
      /missing tensor "model\.layers\.1\.mlp\.experts\.3\.up_proj\.weight" \(no safetensors file of the checkpoint holds it\)/,
    );
  });

  test("missing tensor where the index says a shard holds it", async () => {
    const dir = await fresh(true);
    const index = JSON.parse(await readFile(join(dir, "model.safetensors.index.json"), "utf8")) as {
      weight_map: Record<string, string>;
    };
    assert.equal(index.weight_map["lm_head.weight"], SHARD3);
    await editHeader(join(dir, SHARD3), (h) => delete h["lm_head.weight"]);
    await rejectsWith(
      dir,
      esc(join(dir, SHARD3)),
      /missing tensor "lm_head\.weight" \(the index says this file holds it\)/,
    );
  });

  test("index pointing to a missing file", async () => {
    const dir = await fresh(true);
    await rm(join(dir, SHARD3));
    await rejectsWith(
      dir,
      /model\.safetensors\.index\.json: points to missing file model-00003-of-00003\.safetensors \(for tensor "[^"]+"\)/,
    );
  });

  test("wrong dtype: I32 where a float weight is expected", async () => {
    const dir = await fresh();
    await editHeader(join(dir, "model.safetensors"), (h) => {
      const e = h["model.norm.weight"] as { dtype: string; shape: number[] };
      e.dtype = "I32";
      e.shape = [32]; // same bytes as BF16 [64]
    });
    await rejectsWith(
      dir,
      esc(join(dir, "model.safetensors")),
      /tensor "model\.norm\.weight" has dtype I32; expected a float weight/,
    );
  });

  test("FP8 weight without its _scale_inv", async () => {
    const dir = await fresh(true);
    const name = "model.layers.1.mlp.experts.0.down_proj.weight";
    const indexPath = join(dir, "model.safetensors.index.json");
    let file = "";
    await editJson(indexPath, (v) => {
      const map = v["weight_map"] as Record<string, string>;
      file = map[`${name}_scale_inv`]!;
      delete map[`${name}_scale_inv`];
    });
    await editHeader(join(dir, file), (h) => delete h[`${name}_scale_inv`]);
    await rejectsWith(dir, esc(`tensor "${name}" is F8_E4M3 but has no "${name}_scale_inv"`));
  });

  test("scale grid of the wrong shape", async () => {
    const dir = await fresh(true);
    const name = "model.layers.0.mlp.down_proj.weight"; // [64, 128]: grid [1, 1]
    const index = JSON.parse(await readFile(join(dir, "model.safetensors.index.json"), "utf8")) as {
      weight_map: Record<string, string>;
    };
    const file = join(dir, index.weight_map[`${name}_scale_inv`]!);
    await editHeader(file, (h) => {
      (h[`${name}_scale_inv`] as { shape: number[] }).shape = [1, 1, 1];
    });
    await rejectsWith(
      dir,
      esc(file),
      esc(`tensor "${name}_scale_inv" has shape [1, 1, 1], but [64, 128] in 128×128 blocks needs [1, 1]`),
    );
  });

  test("shape mismatch against config.json", async () => {
    const dir = await fresh();
    await editJson(join(dir, "config.json"), (c) => {
      c["q_lora_rank"] = 40;
    });
    await rejectsWith(
      dir,
      /tensor "model\.layers\.0\.self_attn\.q_a_proj\.weight" has shape \[48, 64\], but config\.json implies \[40, 64\]/,
    );
  });

  test("byte length inconsistent with dtype and shape", async () => {
    const dir = await fresh();
    await editHeader(join(dir, "model.safetensors"), (h) => {
      (h["model.norm.weight"] as { shape: number[] }).shape = [65];
    });
    await rejectsWith(dir, /tensor "model\.norm\.weight": 128 bytes for BF16 \[65\], expected 130/);
  });

  test("no config.json / no weights", async () => {
    const empty = join(tmp.path, "empty");
    await mkdir(empty);
    await rejectsWith(empty, /not a checkpoint directory \(no config\.json\)/);
    const dir = await fresh();
    await rm(join(dir, "model.safetensors"));
    await rejectsWith(dir, /no model\.safetensors and no model\.safetensors\.index\.json/);
  });

  test("F16 tensors are widened exactly", async () => {
    const dir = await fresh();
    // Relabel the BF16 ones of model.norm.weight (0x3F80) as F16: 0x3F80 is 1.875 in F16.
    await editHeader(join(dir, "model.safetensors"), (h) => {
      (h["model.norm.weight"] as { dtype: string }).dtype = "F16";
    });
    const ckpt = await openCheckpoint(dir);
    assert.equal(ckpt.info("model.norm.weight").dtype, "F16");
    assert.ok((await ckpt.readFloat32("model.norm.weight")).every((v) => v === 1.875));
    await ckpt.close();
  });

  test("MTP layers (num_nextn_predict_layers) are skipped, not rejected", async () => {
    // Written with 3 layers, declared as 2 + 1 MTP layer: layer 2's tensors become the MTP layer.
    const dir = await writeMicroCheckpoint(join(tmp.path, "mtp"), { config: { num_hidden_layers: 3 } });
    await editJson(join(dir, "config.json"), (c) => {
      c["num_hidden_layers"] = 2;
      c["num_nextn_predict_layers"] = 1;
    });
    await editHeader(join(dir, "model.safetensors"), (h) => {
      // Real MTP layers add tensors of their own.
      h["model.layers.2.eh_proj.weight"] = {
        ...(h["model.layers.2.input_layernorm.weight"] as {
          dtype: string;
          shape: number[];
          data_offsets: [number, number];
        }),
      };
    });
    const ckpt = await openCheckpoint(dir);
    assert.equal(ckpt.config.numLayers, 2);
    assert.equal(ckpt.config.numNextnPredictLayers, 1);
    assert.ok(!ckpt.tensorNames().some((n) => n.startsWith("model.layers.2.")));
    assert.equal(ckpt.has("model.layers.2.mlp.gate.weight"), false);
    assert.deepEqual(ckpt.warnings, []);
    await ckpt.close();
  });

  test("unknown config keys and extra tensors are warnings", async () => {
    const dir = await fresh();
    await editJson(join(dir, "config.json"), (c) => {
      c["some_future_key"] = 1;
    });
    await editHeader(join(dir, "model.safetensors"), (h) => {
      h["rotary_emb.inv_freq"] = {
        ...(h["model.norm.weight"] as { dtype: string; shape: number[]; data_offsets: [number, number] }),
        dtype: "I16",
      };
    });
    const ckpt = await openCheckpoint(dir);
    assert.equal(ckpt.warnings.length, 2);
    assert.match(ckpt.warnings[0]!, /unknown config key "some_future_key" ignored/);
    assert.match(
      ckpt.warnings[1]!,
      /tensor "rotary_emb\.inv_freq" has dtype I16 and is not part of the model; ignored/,
    );
    assert.equal(ckpt.has("rotary_emb.inv_freq"), false);
    await ckpt.close();
  });
});
