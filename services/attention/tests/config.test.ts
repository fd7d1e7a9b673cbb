import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { loadAttentionConfig, parseWorkerAddresses } from "../src/config.ts";
import { isRoutedExpertTensor } from "../src/core/recording-checkpoint.ts";

const BASE = {
  EXPERTMESH_MODEL_DIR: "/m",
  EXPERTMESH_WORKER_ADDRESSES: "w0=127.0.0.1:5001, w1=10.0.0.2:5002",
};

describe("attention config", () => {
  it("parses the static topology and defaults", () => {
    const c = loadAttentionConfig(BASE);
    assert.deepEqual(
      [...parseWorkerAddresses(c.workerAddresses)],
      [
        ["w0", "127.0.0.1:5001"],
        ["w1", "10.0.0.2:5002"],
      ],
    );
    assert.deepEqual([c.wireDtype, c.combineDtype, c.attentionId, c.kvCacheMb], ["bf16", "bf16", "a0", 256]);
    const f = loadAttentionConfig({
      ...BASE,
      EXPERTMESH_WIRE_DTYPE: "float32",
      EXPERTMESH_COMBINE_DTYPE: "FLOAT32",
    });
    assert.deepEqual([f.wireDtype, f.combineDtype], ["float32", "float32"]);
  });

  it("refuses malformed or repeated worker addresses, unknown dtypes and unknown variables, naming them", () => {
    for (const [env, pattern] of [
      [{ EXPERTMESH_WORKER_ADDRESSES: "w0=127.0.0.1" }, /'w0=127\.0\.0\.1' is not workerId=host:port/],
      [{ EXPERTMESH_WORKER_ADDRESSES: "w0=a:1,w0=b:2" }, /worker 'w0' is listed twice/],
      [{ EXPERTMESH_WIRE_DTYPE: "fp16" }, /EXPERTMESH_WIRE_DTYPE=.*one of bf16 \| float32 \| fp8/],
      [
        { EXPERTMESH_WORKER_ADRESSES: "w0=a:1" },
        /unknown variable \(did you mean EXPERTMESH_WORKER_ADDRESSES\?\)/,
      ],
    ] as const) {
      assert.throws(
        () => loadAttentionConfig({ ...BASE, ...env }),
        (e: unknown) =>
          e instanceof ExpertMeshError && e.code === Code.INVALID_ARGUMENT && pattern.test(e.message),
      );
    }
    assert.throws(
      () => loadAttentionConfig({ EXPERTMESH_MODEL_DIR: "/m" }),
      /EXPERTMESH_WORKER_ADDRESSES: required/,
    );
  });

  it("tells routed-expert tensors from the rest", () => {
    assert.equal(isRoutedExpertTensor("model.layers.3.mlp.experts.17.down_proj.weight"), true);
    assert.equal(isRoutedExpertTensor("model.layers.3.mlp.experts.17.down_proj.weight_scale_inv"), true);
    assert.equal(isRoutedExpertTensor("model.layers.3.mlp.shared_experts.down_proj.weight"), false);
    assert.equal(isRoutedExpertTensor("model.layers.3.mlp.gate.weight"), false);
  });
});
