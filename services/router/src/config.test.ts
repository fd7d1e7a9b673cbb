import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { loadRouterConfig, parseAttentionAddresses } from "./config.ts";

const ENV = {
  EXPERTMESH_MODEL_DIR: "/models/x",
  EXPERTMESH_ATTENTION_ADDRESSES: "a0=127.0.0.1:5001, a1=10.0.0.2:5001",
};

describe("router config", () => {
  it("loads with defaults and parses the attention topology", () => {
    const config = loadRouterConfig(ENV);
    assert.equal(config.httpPort, 8000);
    assert.equal(config.maxQueuedRequests, 256);
    assert.equal(config.loadPollInterval, 1000);
    assert.equal(config.apiKey, undefined);
    assert.deepEqual(
      [...parseAttentionAddresses(config.attentionAddresses)],
      [
        ["a0", "127.0.0.1:5001"],
        ["a1", "10.0.0.2:5001"],
      ],
    );
  });

  it("rejects a malformed or repeated attention address, and unknown variables", () => {
    const invalid = (e: unknown) => e instanceof ExpertMeshError && e.code === Code.INVALID_ARGUMENT;
    assert.throws(
      () => loadRouterConfig({ ...ENV, EXPERTMESH_ATTENTION_ADDRESSES: "127.0.0.1:5001" }),
      invalid,
    );
    assert.throws(
      () => loadRouterConfig({ ...ENV, EXPERTMESH_ATTENTION_ADDRESSES: "a0=h:1,a0=h:2" }),
      invalid,
    );
    assert.throws(
      () => loadRouterConfig({ ...ENV, EXPERTMESH_HTTP_PROT: "1" }),
      /EXPERTMESH_HTTP_PROT: unknown variable/,
    );
    assert.throws(
      () => loadRouterConfig({ EXPERTMESH_MODEL_DIR: "/m" }),
      /EXPERTMESH_ATTENTION_ADDRESSES: required/,
    );
  });
});
