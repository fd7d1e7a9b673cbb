import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { openCheckpoint } from "@expertmesh/model";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { run } from "./make-model.ts";

describe("expertmesh make-model", () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "expertmesh-make-model-"));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test("--preset tiny --fp8 --shards 2 writes a checkpoint the reader opens", async () => {
    const out = join(root, "tiny");
    await run(["--preset", "tiny", "--seed", "3", "--out", out, "--fp8", "--shards", "2"]);
    const ckpt = await openCheckpoint(out);
    assert.equal(ckpt.config.hiddenSize, 64);
    assert.deepEqual(ckpt.config.weightBlockSize, [128, 128]);
    assert.equal(ckpt.info("model.layers.1.mlp.experts.0.up_proj.weight").dtype, "F8_E4M3");
    assert.ok(existsSync(join(out, "model-00002-of-00002.safetensors")));
    assert.ok(existsSync(join(out, "tokenizer.json")));
    await ckpt.close();
  });

  describe("bad flags are INVALID_ARGUMENT with a clear message", () => {
    const cases: Array<[string, string[], RegExp]> = [
      ["no preset", ["--out", "x"], /--preset is required/],
      [
        "unknown preset",
        ["--preset", "huge", "--out", "x"],
        /unknown --preset 'huge' \(expected tiny, small, bench\)/,
      ],
      ["no out", ["--preset", "tiny"], /--out is required/],
      [
        "bad seed",
        ["--preset", "tiny", "--out", "x", "--seed=1.5"],
        /--seed must be a non-negative integer, got '1.5'/,
      ],
      [
        "bad shards",
        ["--preset", "tiny", "--out", "x", "--shards", "two"],
        /--shards must be a non-negative integer, got 'two'/,
      ],
      ["zero shards", ["--preset", "tiny", "--out", "x", "--shards", "0"], /--shards must be at least 1/],
      ["unknown flag", ["--preset", "tiny", "--out", "x", "--bf32"], /Unknown option '--bf32'/],
      ["positional", ["--preset", "tiny", "--out", "x", "extra"], /Unexpected argument 'extra'/],
    ];
    for (const [title, args, re] of cases) {
      test(title, async () => {
        await assert.rejects(run(args), (err: unknown) => {
          assert.ok(err instanceof ExpertMeshError, String(err));
          assert.equal(err.code, Code.INVALID_ARGUMENT);
          assert.match(err.message, re);
          assert.match(err.message, /usage: expertmesh make-model/);
          return true;
        });
      });
    }
  });
});
