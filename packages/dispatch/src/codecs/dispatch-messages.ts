/**
 * DispatchRequest / DispatchResponse ⇄ typed arrays (see proto/expertmesh/v1/expert_service.proto).
 * Decoding checks every packed field's byte length against [R, H] / [R, K] and copies into
 * aligned arrays (protobuf-es `bytes` are views at arbitrary offsets), so a malformed message
 * fails here with INVALID_ARGUMENT naming the field, never later with a RangeError.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { WireDtype } from "@expertmesh/proto";
import type {
  DispatchRequest,
  DispatchRequestSchema,
  DispatchResponse,
  DispatchResponseSchema,
  ErrorStatus,
} from "@expertmesh/proto";
import {
  Code,
  ExpertMeshError,
  bytesAsFloat32,
  bytesAsInt32,
  expectByteLength,
  invalidArgument,
  toWireStatus,
  typedArrayBytes,
} from "@expertmesh/shared";
import { decodeRows, encodeSums, isCombineDtype, isRowDtype } from "./wire-rows.ts";
import type { CombineDtype, EncodedRows, RowDtype } from "./wire-rows.ts";

export type DispatchRequestInit = MessageInitShape<typeof DispatchRequestSchema>;
export type DispatchResponseInit = MessageInitShape<typeof DispatchResponseSchema>;

/** What identifies one request on a stream (echoed by its response). */
export interface DispatchKey {
  readonly microBatchId: number;
  readonly layer: number;
}

export interface DispatchRequestInput extends DispatchKey {
  readonly placementVersion: number;
  /** [R, H] this worker's rows, already encoded. */
  readonly rows: EncodedRows;
  /** K: slots per row. */
  readonly topK: number;
  /** [R, K] logical expert per slot, −1 where another worker serves the slot. */
  readonly logical: Int32Array;
  /** [R, K] physical expert per slot, −1 exactly where `logical` is −1. */
  readonly physical: Int32Array;
  /** [R, K] gate weight per slot, 0 where the slot is −1. */
  readonly weights: Float32Array;
  readonly combineDtype: CombineDtype;
}

export function encodeDispatchRequest(input: DispatchRequestInput): DispatchRequestInit {
  const { rows, topK } = input;
  const slots = rows.numRows * topK;
  for (const [field, array] of [
    ["logical", input.logical],
    ["physical", input.physical],
    ["weights", input.weights],
  ] as const) {
    if (array.length !== slots)
      throw invalidArgument(
        field,
        `expected ${rows.numRows} × ${topK} = ${slots} entries, got ${array.length}`,
      );
  }
  return {
    microBatchId: input.microBatchId,
    layer: input.layer,
    placementVersion: input.placementVersion,
    numRows: rows.numRows,
    hiddenSize: rows.hidden,
    rowDtype: rows.dtype,
    rows: rows.data,
    rowScales: rows.scales,
    topK,
    logicalExpertIds: typedArrayBytes(input.logical),
    physicalExpertIds: typedArrayBytes(input.physical),
    expertWeights: typedArrayBytes(input.weights),
    combineDtype: input.combineDtype,
  };
}

/** A request decoded into aligned typed arrays the receiver owns. */
export interface DecodedDispatchRequest extends DispatchKey {
  readonly placementVersion: number;
  readonly numRows: number;
  readonly hiddenSize: number;
  readonly topK: number;
  readonly rowDtype: RowDtype;
  readonly combineDtype: CombineDtype;
  /** [R, H] */
  readonly rows: Float32Array;
  /** [R, K] */
  readonly logical: Int32Array;
  /** [R, K] */
  readonly physical: Int32Array;
  /** [R, K] */
  readonly weights: Float32Array;
}

export interface DecodeRequestLimits {
  /** The model's hidden size: any other value is INVALID_ARGUMENT. */
  readonly hiddenSize: number;
  /** Largest K accepted (a sanity bound; 64 by default). */
  readonly maxTopK?: number;
}

/**
 * Validates and decodes a request: dtypes, byte lengths, −1 slots consistent between logical
 * and physical ids with weight 0, finite weights. INVALID_ARGUMENT naming the field otherwise.
 */
export function decodeDispatchRequest(
  request: DispatchRequest,
  limits: DecodeRequestLimits,
): DecodedDispatchRequest {
  const { numRows: R, hiddenSize: H, topK: K, rowDtype, combineDtype } = request;
  if (H !== limits.hiddenSize)
    throw invalidArgument("hidden_size", `expected ${limits.hiddenSize}, got ${H}`);
  if (!isRowDtype(rowDtype))
    throw invalidArgument(
      "row_dtype",
      `must be FLOAT32, BF16 or FP8_E4M3, got ${WireDtype[rowDtype] ?? rowDtype}`,
    );
  if (!isCombineDtype(combineDtype)) {
    throw invalidArgument(
      "combine_dtype",
      `must be FLOAT32 or BF16, got ${WireDtype[combineDtype] ?? combineDtype}`,
    );
  }
  const maxTopK = limits.maxTopK ?? 64;
  if (K < 1 || K > maxTopK) throw invalidArgument("top_k", `must be in 1..${maxTopK}, got ${K}`);
  const slots = R * K;
  expectByteLength(request.logicalExpertIds, slots * 4, "logical_expert_ids");
  expectByteLength(request.physicalExpertIds, slots * 4, "physical_expert_ids");
  expectByteLength(request.expertWeights, slots * 4, "expert_weights");
  const rows = decodeRows(request.rows, request.rowScales, rowDtype, R, H);
  // Copies when unaligned; otherwise views of the message, which the caller owns as well.
  const logical = bytesAsInt32(request.logicalExpertIds, "logical_expert_ids");
  const physical = bytesAsInt32(request.physicalExpertIds, "physical_expert_ids");
  const weights = bytesAsFloat32(request.expertWeights, "expert_weights");
  for (let i = 0; i < slots; i++) {
    const l = logical[i] as number;
    const p = physical[i] as number;
    const w = weights[i] as number;
    if (l < -1 || p < -1 || (l === -1) !== (p === -1)) {
      throw invalidArgument(
        "physical_expert_ids",
        `row ${Math.floor(i / K)} slot ${i % K}: logical ${l} / physical ${p}; both must be ≥ 0, or both −1`,
      );
    }
    if (!Number.isFinite(w) || (p === -1 && w !== 0)) {
      throw invalidArgument(
        "expert_weights",
        `row ${Math.floor(i / K)} slot ${i % K}: weight ${w} (must be finite, and 0 on a −1 slot)`,
      );
    }
  }
  return {
    microBatchId: request.microBatchId,
    layer: request.layer,
    placementVersion: request.placementVersion,
    numRows: R,
    hiddenSize: H,
    topK: K,
    rowDtype,
    combineDtype,
    rows,
    logical,
    physical,
    weights,
  };
}

/** What a response echoes of its request (taken from the raw message, so errors can echo it too). */
export interface ResponseEcho extends DispatchKey {
  readonly numRows: number;
  readonly hiddenSize: number;
}

/** The response carrying `sums` [R, H] for `request`. */
export function encodeDispatchResponse(
  request: ResponseEcho,
  sums: Float32Array,
  combineDtype: CombineDtype,
  computeUs: number,
): DispatchResponseInit {
  return {
    microBatchId: request.microBatchId,
    layer: request.layer,
    numRows: request.numRows,
    hiddenSize: request.hiddenSize,
    combineDtype,
    sums: encodeSums(sums, combineDtype),
    computeUs: clampUint32(computeUs),
  };
}

/** The in-band failure of one request; `toWireStatus` decides what the client reads. */
export function dispatchErrorResponse(
  request: ResponseEcho,
  error: unknown,
  computeUs = 0,
): DispatchResponseInit {
  const status = toWireStatus(error);
  return {
    microBatchId: request.microBatchId,
    layer: request.layer,
    numRows: request.numRows,
    hiddenSize: request.hiddenSize,
    error: { code: status.code, message: status.message, details: { ...status.details } },
    computeUs: clampUint32(computeUs),
  };
}

/** An in-band ErrorStatus as an ExpertMeshError (an unknown code reads as UNKNOWN). */
export function errorFromStatus(status: ErrorStatus, context: string): ExpertMeshError {
  // A failure reported as OK (0) or with a code outside grpc's 1..16 is still a failure.
  const code =
    Number.isInteger(status.code) && status.code >= 1 && status.code <= 16
      ? (status.code as Code)
      : Code.UNKNOWN;
  return new ExpertMeshError(code, `${context}: ${status.message}`, { details: status.details });
}

/** What the client expects a response to echo. */
export interface ExpectedResponse extends ResponseEcho {
  readonly combineDtype: CombineDtype;
}

/**
 * Checks a response against its request: the echo must match (else INTERNAL — the stream is out
 * of step), an in-band error is thrown as an ExpertMeshError with the worker's code, and the
 * dtype must be the one asked for. Returns the sums bytes (length checked when combined).
 */
export function checkDispatchResponse(
  response: DispatchResponse,
  expected: ExpectedResponse,
  context: string,
): Uint8Array {
  if (response.microBatchId !== expected.microBatchId || response.layer !== expected.layer) {
    throw new ExpertMeshError(
      Code.INTERNAL,
      `${context}: response for micro-batch ${response.microBatchId} layer ${response.layer}, expected micro-batch ${expected.microBatchId} layer ${expected.layer}`,
    );
  }
  if (response.error !== undefined) throw errorFromStatus(response.error, context);
  if (response.numRows !== expected.numRows || response.hiddenSize !== expected.hiddenSize) {
    throw new ExpertMeshError(
      Code.INTERNAL,
      `${context}: response shape [${response.numRows}, ${response.hiddenSize}], expected [${expected.numRows}, ${expected.hiddenSize}]`,
    );
  }
  if (response.combineDtype !== expected.combineDtype) {
    throw new ExpertMeshError(
      Code.INTERNAL,
      `${context}: sums in ${WireDtype[response.combineDtype] ?? response.combineDtype}, asked for ${WireDtype[expected.combineDtype]}`,
    );
  }
  return response.sums;
}

function clampUint32(n: number): number {
  return Math.min(0xffffffff, Math.max(0, Math.round(n)));
}
