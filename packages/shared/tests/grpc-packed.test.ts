import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AttentionService, DispatchRequestSchema, ExpertService, InferenceService } from "@expertmesh/proto";
import {
  Code,
  ExpertMeshError,
  bf16ToFloat32,
  bytesAsFloat32,
  bytesAsInt32,
  bytesAsUint16,
  deserializeMessage,
  expectByteLength,
  float32ToBf16,
  serializeMessage,
  toGrpcServiceDefinition,
  typedArrayBytes,
} from "@expertmesh/shared";

function bitsToFloat(bits: number): number {
  return new Float32Array(new Uint32Array([bits]).buffer)[0] as number;
}

describe("packed bytes fields", () => {
  it("views aligned bytes without copying", () => {
    const source = new Float32Array([1.5, -2, 3.25]);
    const view = bytesAsFloat32(typedArrayBytes(source));
    assert.equal(view.buffer, source.buffer);
    assert.deepEqual([...view], [1.5, -2, 3.25]);
  });

  it("copies bytes at an unaligned offset instead of throwing", () => {
    const raw = new Uint8Array(1 + 8);
    raw.set(typedArrayBytes(new Int32Array([-1, 42])), 1);
    const ids = bytesAsInt32(raw.subarray(1), "ids");
    assert.notEqual(ids.buffer, raw.buffer);
    assert.deepEqual([...ids], [-1, 42]);
  });

  it("decodes the rows of a received DispatchRequest whatever their offset", () => {
    const rows = new Float32Array([0.5, -0.25, 7, 1e-3]);
    // A 1-byte layer field before rows puts them at an offset that is not a multiple of 4.
    const encoded = serializeMessage(DispatchRequestSchema, {
      layer: 3,
      numRows: 1,
      rows: typedArrayBytes(rows),
    });
    const decoded = deserializeMessage(DispatchRequestSchema, encoded);
    assert.notEqual(decoded.rows.byteOffset % 4, 0);
    assert.throws(() => new Float32Array(decoded.rows.buffer, decoded.rows.byteOffset, 4), RangeError);
    assert.deepEqual([...bytesAsFloat32(decoded.rows, "rows")], [...rows]);
  });

  it("rejects a length that is not a whole number of elements, naming the field", () => {
    assert.throws(
      () => bytesAsFloat32(new Uint8Array(6), "expert_weights"),
      (e: unknown) =>
        e instanceof ExpertMeshError &&
        e.code === Code.INVALID_ARGUMENT &&
        e.message.startsWith("expert_weights:"),
    );
    assert.throws(
      () => expectByteLength(new Uint8Array(8), 12, "rows"),
      (e: unknown) =>
        e instanceof ExpertMeshError && e.code === Code.INVALID_ARGUMENT && e.details.field === "rows",
    );
  });

  it("rounds float32 to bf16 to nearest even and keeps specials", () => {
    const inputs = [
      1, // exact
      bitsToFloat(0x3f808000), // halfway, even below → down
      bitsToFloat(0x3f818000), // halfway, odd below → up
      bitsToFloat(0x3f808001), // above halfway → up
      -0,
      Infinity,
      bitsToFloat(0x7f7fffff), // largest float32 rounds to +inf
      NaN,
    ];
    const bf16 = float32ToBf16(new Float32Array(inputs));
    assert.deepEqual(
      [...bf16].slice(0, 7).map((b) => b.toString(16)),
      ["3f80", "3f80", "3f82", "3f81", "8000", "7f80", "7f80"],
    );
    assert.ok(Number.isNaN(bf16ToFloat32(bf16.subarray(7))[0]));
  });

  it("round-trips bf16 bits exactly through float32 and bytes", () => {
    const bits = new Uint16Array([0x3f80, 0xc0a0, 0x0001, 0x7f7f, 0x8000]);
    const floats = bf16ToFloat32(bytesAsUint16(typedArrayBytes(bits)));
    assert.deepEqual([...floats.slice(0, 2)], [1, -5]);
    assert.deepEqual([...float32ToBf16(floats)], [...bits]);
  });
});

describe("toGrpcServiceDefinition", () => {
  it("maps every method to its path, streaming flags and codecs", () => {
    const expert = toGrpcServiceDefinition(ExpertService);
    assert.deepEqual(Object.keys(expert).sort(), ["dispatch", "getWorkerInfo"]);
    assert.equal(expert.dispatch?.path, "/expertmesh.v1.ExpertService/Dispatch");
    assert.equal(expert.dispatch?.originalName, "Dispatch");
    assert.deepEqual([expert.dispatch?.requestStream, expert.dispatch?.responseStream], [true, true]);
    assert.deepEqual(
      [expert.getWorkerInfo?.requestStream, expert.getWorkerInfo?.responseStream],
      [false, false],
    );

    const inference = toGrpcServiceDefinition(InferenceService);
    assert.equal(inference.generate?.path, "/expertmesh.v1.InferenceService/Generate");
    assert.deepEqual([inference.generate?.requestStream, inference.generate?.responseStream], [false, true]);

    const attention = toGrpcServiceDefinition(AttentionService);
    assert.equal(attention.serve?.path, "/expertmesh.v1.AttentionService/Serve");
    assert.deepEqual([attention.serve?.requestStream, attention.serve?.responseStream], [true, true]);

    const dispatch = expert.dispatch;
    assert.ok(dispatch !== undefined);
    const wire = dispatch.requestSerialize({ microBatchId: 4, layer: 9 });
    assert.ok(Buffer.isBuffer(wire));
    const back = dispatch.requestDeserialize(wire) as { microBatchId: number; layer: number };
    assert.deepEqual([back.microBatchId, back.layer], [4, 9]);
  });
});
