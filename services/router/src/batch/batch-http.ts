/**
 * The HTTP face of the batch jobs, as a handler the router's HTTP server mounts under /v1.
 * Bodies are the proto3 JSON mapping of the BatchService messages (field names as in the
 * .proto, snake_case; camelCase is accepted on input; 64-bit integers as strings; enums by name),
 * the same contract as gRPC with no second schema to keep in step:
 *
 *   POST   /v1/batch_jobs                     SubmitBatchRequest       → SubmitBatchResponse
 *   GET    /v1/batch_jobs/{id}                                         → GetBatchResponse
 *   GET    /v1/batch_jobs/{id}/results?offset=&limit=                  → GetBatchResultsResponse
 *   DELETE /v1/batch_jobs/{id}                                         → CancelBatchResponse
 *   POST   /v1/batch_jobs/{id}/cancel                                  → CancelBatchResponse
 *
 * Failures are thrown as ExpertMeshError, for the server's one error mapping to turn into a status.
 */
import { create, fromJson, toJson } from "@bufbuild/protobuf";
import type { DescMessage, JsonValue, MessageInitShape } from "@bufbuild/protobuf";
import {
  CancelBatchResponseSchema,
  GetBatchResponseSchema,
  GetBatchResultsResponseSchema,
  SubmitBatchRequestSchema,
  SubmitBatchResponseSchema,
} from "@expertmesh/proto";
import type { SubmitBatchRequest } from "@expertmesh/proto";
import { Code, ExpertMeshError, invalidArgument } from "@expertmesh/shared";
import type { BatchJobs } from "./batch-jobs.ts";

export interface BatchHttpRequest {
  readonly method: string;
  /** The path without the query string. */
  readonly path: string;
  readonly query: URLSearchParams;
  /** Reads and parses the JSON body (only POST /v1/batch_jobs reads it). */
  readonly body: () => Promise<unknown>;
}

export interface BatchHttpResponse {
  readonly status: number;
  readonly body: JsonValue;
}

const ROOT = "/v1/batch_jobs";
const JOB_PATH = /^\/v1\/batch_jobs\/([^/]+)(\/results|\/cancel)?$/;

/** Whether `path` is one of the batch routes (the router then hands the request to handleBatchHttp). */
export function isBatchHttpPath(path: string): boolean {
  return path === ROOT || JOB_PATH.test(path);
}

export async function handleBatchHttp(
  jobs: BatchJobs,
  request: BatchHttpRequest,
): Promise<BatchHttpResponse> {
  const { method, path } = request;
  if (path === ROOT) {
    if (method !== "POST") return methodNotAllowed(method, path, "POST");
    const submit = parseBody(await request.body());
    return ok(SubmitBatchResponseSchema, { batch: await jobs.submit(submit) });
  }
  const match = JOB_PATH.exec(path);
  if (match === null) throw new ExpertMeshError(Code.NOT_FOUND, `no route ${path}`);
  const batchId = decodeURIComponent(match[1] ?? "");
  switch (match[2]) {
    case undefined:
      if (method === "GET") return ok(GetBatchResponseSchema, { batch: await jobs.get(batchId) });
      if (method === "DELETE") return ok(CancelBatchResponseSchema, { batch: await jobs.cancel(batchId) });
      return methodNotAllowed(method, path, "GET, DELETE");
    case "/results": {
      if (method !== "GET") return methodNotAllowed(method, path, "GET");
      const page = await jobs.results(
        batchId,
        queryInt(request.query, "offset"),
        queryInt(request.query, "limit"),
      );
      return ok(GetBatchResultsResponseSchema, page);
    }
    default:
      if (method !== "POST") return methodNotAllowed(method, path, "POST");
      return ok(CancelBatchResponseSchema, { batch: await jobs.cancel(batchId) });
  }
}

function parseBody(body: unknown): SubmitBatchRequest {
  try {
    return fromJson(SubmitBatchRequestSchema, body as JsonValue);
  } catch (err) {
    throw new ExpertMeshError(
      Code.INVALID_ARGUMENT,
      `the body is not a SubmitBatchRequest: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
}

function ok<D extends DescMessage>(schema: D, init: MessageInitShape<D>): BatchHttpResponse {
  return { status: 200, body: toJson(schema, create(schema, init), { useProtoFieldName: true }) };
}

function queryInt(query: URLSearchParams, name: string): number {
  const raw = query.get(name);
  if (raw === null || raw === "") return 0;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0 || value > 2 ** 32 - 1) {
    throw invalidArgument(name, `must be a non-negative integer, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function methodNotAllowed(method: string, path: string, allowed: string): BatchHttpResponse {
  return {
    status: 405,
    body: {
      error: {
        message: `${method} not allowed on ${path} (allowed: ${allowed})`,
        type: "invalid_request_error",
        param: null,
        code: null,
      },
    },
  };
}
