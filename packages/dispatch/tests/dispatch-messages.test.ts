import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { DispatchRequestSchema, DispatchResponseSchema, WireDtype } from "@expertmesh/proto";
import type { DispatchRequest } from "@expertmesh/proto";
import { Code, ExpertMeshError, invalidArgument } from "@expertmesh/shared";
import {
  checkDispatchResponse,
  decodeDispatchRequest,
  dispatchErrorResponse,
  encodeDispatchRequest,
  encodeDispatchResponse,
  encodeRows,
} from "../src/index.ts";
import type { DispatchRequestInit, RowDtype } from "../src/index.ts";
import { seededRandom, throwsCode } from "./helpers.ts";

const H = 128;
const K = 4;
const R = 3;

function sample(dtype: RowDtype): { init: DispatchRequestInit; rows: Float32Array } {
  const random = seededRandom(5);
  const rows = Float32Array.from({ length: R * H }, () => random() * 2 - 1);
  const logical = Int32Array.of(3, -1, 7, 9, -1, -1, 12, 1, 4, 5, -1, 6);
  const physical = Int32Array.from(logical, (l) => (l < 0 ? -1 : l + 100));
  const weights = Float32Array.from(logical, (l) => (l < 0 ? 0 : 0.25 + l / 100));
  const init = encodeDispatchRequest({
    microBatchId: 42,
    layer: 3,
    placementVersion: 2,
    rows: encodeRows(rows, H, dtype),
    topK: K,
    logical,
    physical,
    weights,
    combineDtype: WireDtype.BF16,
  });
  return { init, rows };
}

/**
 * Serializes and parses the message the way it arrives, but from a buffer at an odd offset, so
 * the parsed `bytes` fields are views at unaligned offsets (as protobuf-es may hand them over).
 */
function overTheWire(init: DispatchRequestInit): DispatchRequest {
  const binary = toBinary(DispatchRequestSchema, create(DispatchRequestSchema, init));
  const shifted = new Uint8Array(binary.length + 1);
  shifted.set(binary, 1);
  return fromBinary(DispatchRequestSchema, shifted.subarray(1));
}

describe("DispatchRequest codec", () => {
  for (const dtype of [WireDtype.FLOAT32, WireDtype.BF16, WireDtype.FP8_E4M3] as const) {
    it(`decodes a ${WireDtype[dtype]} request received at unaligned offsets into aligned arrays`, () => {
      const { init, rows } = sample(dtype);
      const message = overTheWire(init);
      assert.ok(
        [message.logicalExpertIds, message.physicalExpertIds, message.expertWeights, message.rows].some(
          (b) => b.byteOffset % 4 !== 0,
        ),
        "the test exercises unaligned fields",
      );
      const d = decodeDispatchRequest(message, { hiddenSize: H });
      assert.equal(d.microBatchId, 42);
      assert.equal(d.layer, 3);
      assert.equal(d.placementVersion, 2);
      assert.equal(d.numRows, R);
      assert.equal(d.topK, K);
      assert.equal(d.rowDtype, dtype);
      assert.equal(d.combineDtype, WireDtype.BF16);
      assert.deepEqual(Array.from(d.logical), [3, -1, 7, 9, -1, -1, 12, 1, 4, 5, -1, 6]);
      assert.deepEqual(Array.from(d.physical), [103, -1, 107, 109, -1, -1, 112, 101, 104, 105, -1, 106]);
      assert.equal(d.weights[0], Math.fround(0.28));
      assert.equal(d.rows.length, R * H);
      const tolerance = dtype === WireDtype.FLOAT32 ? 0 : dtype === WireDtype.BF16 ? 2 ** -8 : 2 ** -3;
      for (let i = 0; i < rows.length; i++)
        assert.ok(Math.abs((d.rows[i] as number) - (rows[i] as number)) <= tolerance, `row value ${i}`);
    });
  }

  describe("refuses a malformed request with INVALID_ARGUMENT naming the field", () => {
    const base = sample(WireDtype.BF16).init;
    const cases: [string, Partial<DispatchRequestInit>, string][] = [
      ["hidden size other than the model's", { hiddenSize: 64 }, "hidden_size"],
      ["unspecified row dtype", { rowDtype: WireDtype.UNSPECIFIED }, "row_dtype"],
      ["FP8 sums", { combineDtype: WireDtype.FP8_E4M3 }, "combine_dtype"],
      ["top_k 0", { topK: 0 }, "top_k"],
      ["rows one byte short", { rows: new Uint8Array(R * H * 2 - 1) }, "rows"],
      ["one row too many announced", { numRows: R + 1 }, "logical_expert_ids"],
      ["scales with BF16 rows", { rowScales: new Uint8Array(4) }, "row_scales"],
      [
        "physical ids of the wrong length",
        { physicalExpertIds: new Uint8Array(R * K * 4 - 4) },
        "physical_expert_ids",
      ],
      ["weights of the wrong length", { expertWeights: new Uint8Array(0) }, "expert_weights"],
      [
        "a slot with a logical but no physical expert",
        {
          physicalExpertIds: new Uint8Array(
            Int32Array.of(-1, -1, 107, 109, -1, -1, 112, 101, 104, 105, -1, 106).buffer,
          ),
        },
        "physical_expert_ids",
      ],
      [
        "a weight on an empty slot",
        { expertWeights: new Uint8Array(Float32Array.of(1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1).buffer) },
        "expert_weights",
      ],
      [
        "a NaN weight",
        {
          expertWeights: new Uint8Array(Float32Array.of(Number.NaN, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1).buffer),
        },
        "expert_weights",
      ],
    ];
    for (const [what, change, field] of cases) {
      it(what, () =>
        throwsCode(
          () =>
            decodeDispatchRequest(overTheWire({ ...base, ...change } as DispatchRequestInit), {
              hiddenSize: H,
            }),
          Code.INVALID_ARGUMENT,
          field,
        ),
      );
    }
  });
});

describe("DispatchResponse codec", () => {
  const expected = {
    microBatchId: 7,
    layer: 2,
    numRows: 2,
    hiddenSize: 4,
    combineDtype: WireDtype.FLOAT32,
  } as const;

  it("carries sums and echoes the request", () => {
    const sums = Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8);
    const response = fromBinary(
      DispatchResponseSchema,
      toBinary(
        DispatchResponseSchema,
        create(DispatchResponseSchema, encodeDispatchResponse(expected, sums, WireDtype.FLOAT32, 12.6)),
      ),
    );
    assert.equal(response.computeUs, 13);
    const bytes = checkDispatchResponse(response, expected, "worker w0");
    assert.deepEqual(new Float32Array(new Uint8Array(bytes).buffer), sums);
  });

  it("turns an in-band error back into an ExpertMeshError with its code, message and details", () => {
    const wire = create(
      DispatchResponseSchema,
      dispatchErrorResponse(expected, invalidArgument("top_k", "must be in 1..64, got 0")),
    );
    assert.equal(wire.sums.length, 0);
    assert.throws(
      () => checkDispatchResponse(wire, expected, "worker w0"),
      (e: unknown) =>
        e instanceof ExpertMeshError &&
        e.code === Code.INVALID_ARGUMENT &&
        e.message === "worker w0: top_k: must be in 1..64, got 0" &&
        e.details.field === "top_k",
    );
    // Internal causes never cross the wire.
    const internal = create(
      DispatchResponseSchema,
      dispatchErrorResponse(expected, new Error("secret stack")),
    );
    assert.equal(internal.error?.code, Code.INTERNAL);
    assert.equal(internal.error?.message, "internal error");
  });

  it("refuses a response for another request, shape or dtype (INTERNAL: the stream is out of step)", () => {
    const sums = new Float32Array(8);
    const ok = create(DispatchResponseSchema, encodeDispatchResponse(expected, sums, WireDtype.FLOAT32, 0));
    throwsCode(() => checkDispatchResponse({ ...ok, microBatchId: 8 }, expected, "w"), Code.INTERNAL);
    throwsCode(() => checkDispatchResponse({ ...ok, numRows: 3 }, expected, "w"), Code.INTERNAL);
    throwsCode(
      () => checkDispatchResponse({ ...ok, combineDtype: WireDtype.BF16 }, expected, "w"),
      Code.INTERNAL,
    );
  });
});
