/**
 * The one error type of ExpertMesh. Every failure that crosses a service boundary is an
 * ExpertMeshError; `toWireStatus` is the single place that decides what a client sees.
 * Internal causes stay in `cause` for the logs and are never sent.
 */

/** gRPC status codes (numbers as in grpc's status.proto), named so callers need no grpc import. */
export enum Code {
  OK = 0,
  CANCELLED = 1,
  UNKNOWN = 2,
  INVALID_ARGUMENT = 3,
  DEADLINE_EXCEEDED = 4,
  NOT_FOUND = 5,
  ALREADY_EXISTS = 6,
  PERMISSION_DENIED = 7,
  RESOURCE_EXHAUSTED = 8,
  FAILED_PRECONDITION = 9,
  ABORTED = 10,
  OUT_OF_RANGE = 11,
  UNIMPLEMENTED = 12,
  INTERNAL = 13,
  UNAVAILABLE = 14,
  DATA_LOSS = 15,
  UNAUTHENTICATED = 16,
}

export interface ExpertMeshErrorOptions {
  /** Machine-readable facts a client may act on (field name, limit, …); sent as metadata. */
  details?: Readonly<Record<string, string>>;
  /** The underlying failure; logged, never sent to a client. */
  cause?: unknown;
}

export class ExpertMeshError extends Error {
  override readonly name = "ExpertMeshError";
  readonly code: Code;
  readonly details: Readonly<Record<string, string>>;

  constructor(code: Code, message: string, options: ExpertMeshErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
  }

  /** Normalises anything thrown into an ExpertMeshError (unknown failures become INTERNAL). */
  static from(err: unknown): ExpertMeshError {
    if (err instanceof ExpertMeshError) return err;
    const sys = systemErrorCode(err);
    if (sys !== undefined) return new ExpertMeshError(sys, "peer connection failed", { cause: err });
    if (isGrpcLike(err)) return new ExpertMeshError(err.code, err.details ?? err.message, { cause: err });
    return new ExpertMeshError(Code.INTERNAL, "internal error", { cause: err });
  }
}

/** Shorthand for the most common client error: a named request field is wrong. */
export function invalidArgument(field: string, message: string): ExpertMeshError {
  return new ExpertMeshError(Code.INVALID_ARGUMENT, `${field}: ${message}`, { details: { field } });
}

const NODE_SYSTEM_CODES: Readonly<Record<string, Code>> = {
  ECONNREFUSED: Code.UNAVAILABLE,
  ECONNRESET: Code.UNAVAILABLE,
  EPIPE: Code.UNAVAILABLE,
  EHOSTUNREACH: Code.UNAVAILABLE,
  ETIMEDOUT: Code.DEADLINE_EXCEEDED,
};

function systemErrorCode(err: unknown): Code | undefined {
  if (typeof err !== "object" || err === null || !("code" in err)) return undefined;
  const code = err.code;
  return typeof code === "string" ? NODE_SYSTEM_CODES[code] : undefined;
}

function isGrpcLike(err: unknown): err is { code: Code; details?: string; message: string } {
  return (
    err instanceof Error &&
    "code" in err &&
    typeof err.code === "number" &&
    err.code > 0 &&
    err.code <= 16 &&
    "metadata" in err
  );
}

/** Codes whose message is safe and useful to show to a client as written. */
const CLIENT_VISIBLE = new Set<Code>([
  Code.CANCELLED,
  Code.INVALID_ARGUMENT,
  Code.DEADLINE_EXCEEDED,
  Code.NOT_FOUND,
  Code.ALREADY_EXISTS,
  Code.PERMISSION_DENIED,
  Code.RESOURCE_EXHAUSTED,
  Code.FAILED_PRECONDITION,
  Code.ABORTED,
  Code.OUT_OF_RANGE,
  Code.UNIMPLEMENTED,
  Code.UNAVAILABLE,
  Code.UNAUTHENTICATED,
]);

export interface WireStatus {
  code: Code;
  /** What the client reads. Internal failures read "internal error", whatever caused them. */
  message: string;
  details: Readonly<Record<string, string>>;
  /** HTTP status for the OpenAI-compatible API. */
  httpStatus: number;
}

const HTTP_STATUS: Readonly<Partial<Record<Code, number>>> = {
  [Code.CANCELLED]: 499,
  [Code.INVALID_ARGUMENT]: 400,
  [Code.OUT_OF_RANGE]: 400,
  [Code.FAILED_PRECONDITION]: 400,
  [Code.UNAUTHENTICATED]: 401,
  [Code.PERMISSION_DENIED]: 403,
  [Code.NOT_FOUND]: 404,
  [Code.ALREADY_EXISTS]: 409,
  [Code.ABORTED]: 409,
  [Code.RESOURCE_EXHAUSTED]: 429,
  [Code.UNIMPLEMENTED]: 501,
  [Code.UNAVAILABLE]: 503,
  [Code.DEADLINE_EXCEEDED]: 504,
};

/** The one mapping from any thrown value to what a client is told. */
export function toWireStatus(err: unknown): WireStatus {
  const e = ExpertMeshError.from(err);
  const visible = CLIENT_VISIBLE.has(e.code);
  return {
    code: e.code,
    message: visible ? e.message : "internal error",
    details: visible ? e.details : {},
    httpStatus: HTTP_STATUS[e.code] ?? 500,
  };
}

/** Codes a client may retry with backoff (INTERNAL is not retried). */
export function isRetryable(code: Code): boolean {
  return code === Code.UNAVAILABLE || code === Code.RESOURCE_EXHAUSTED || code === Code.ABORTED;
}
