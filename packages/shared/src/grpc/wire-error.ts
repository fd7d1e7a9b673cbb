import { Metadata } from "@grpc/grpc-js";
import type { StatusObject } from "@grpc/grpc-js";
import { Code, ExpertMeshError, toWireStatus } from "../errors.ts";

/**
 * Trailer that carries an error's client-visible `details` as a UTF-8 JSON object. Binary
 * metadata, so any key and value fit (ASCII metadata would force lower-case ASCII keys).
 */
export const ERROR_DETAILS_TRAILER = "expertmesh-error-details-bin";

/** What the server reports about a handler failure to its logger. */
export interface HandlerErrorEvent {
  /** gRPC path of the call. */
  method: string;
  /** The status code the client got. */
  code: Code;
  /** The message the client got ("internal error" for internal failures). */
  sentMessage: string;
  /** True for failures the client cannot be told about (INTERNAL, UNKNOWN, DATA_LOSS): log them. */
  internal: boolean;
  /** What the handler threw, cause chain included. Never sent. */
  error: unknown;
}

export type HandlerErrorLogger = (event: HandlerErrorEvent) => void;

/** Default logger: internal failures to stderr, expected ones (bad input, …) not at all. */
export const logInternalErrorsToStderr: HandlerErrorLogger = (event) => {
  if (!event.internal) return;
  const error =
    event.error instanceof Error ? (event.error.stack ?? event.error.message) : String(event.error);
  process.stderr.write(`grpc handler ${event.method} failed (${Code[event.code]}): ${error}\n`);
};

/**
 * The one place where anything a handler throws becomes a gRPC status: code and message from
 * `toWireStatus`, details as the ERROR_DETAILS_TRAILER; the original error goes to `log` only.
 */
export function handlerErrorStatus(error: unknown, method: string, log: HandlerErrorLogger): StatusObject {
  const wire = toWireStatus(error);
  // An error object claiming OK still failed the call.
  const code = wire.code === Code.OK ? Code.INTERNAL : wire.code;
  const internal = code === Code.INTERNAL || code === Code.UNKNOWN || code === Code.DATA_LOSS;
  try {
    log({ method, code, sentMessage: wire.message, internal, error });
  } catch {
    // A failing logger must not turn into a second failure of the call.
  }
  const metadata = new Metadata();
  if (Object.keys(wire.details).length > 0) {
    metadata.set(ERROR_DETAILS_TRAILER, Buffer.from(JSON.stringify(wire.details), "utf8"));
  }
  return { code: code as number, details: wire.message, metadata };
}

/**
 * Client side: a failed call (grpc-js ServiceError, or anything else thrown on the way) as an
 * ExpertMeshError with the server's code, message and details.
 */
export function fromGrpcError(error: unknown): ExpertMeshError {
  const normalized = ExpertMeshError.from(error);
  if (normalized === error) return normalized;
  const details = readErrorDetails(error);
  if (details === undefined) return normalized;
  return new ExpertMeshError(normalized.code, normalized.message, { details, cause: error });
}

function readErrorDetails(error: unknown): Record<string, string> | undefined {
  if (typeof error !== "object" || error === null || !("metadata" in error)) return undefined;
  const metadata = error.metadata;
  if (!(metadata instanceof Metadata)) return undefined;
  const raw = metadata.get(ERROR_DETAILS_TRAILER)[0];
  if (raw === undefined) return undefined;
  try {
    const parsed: unknown = JSON.parse(Buffer.isBuffer(raw) ? raw.toString("utf8") : raw);
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return undefined;
    const details: Record<string, string> = {};
    for (const [key, value] of Object.entries(parsed)) {
      if (typeof value === "string") details[key] = value;
    }
    return details;
  } catch {
    // A peer that sends a malformed trailer still gets its code and message through.
    return undefined;
  }
}
