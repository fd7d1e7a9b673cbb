import { ChannelCredentials } from "@grpc/grpc-js";
import type { ChannelOptions } from "@grpc/grpc-js";
import { invalidArgument } from "@expertmesh/shared";
import { compileRetryPolicy } from "./retry-policy.ts";
import type { RetryOptions, RetryPolicy } from "./retry-policy.ts";

/** PEM text or bytes. */
export type Pem = string | Uint8Array;

/** TLS to the router: `true` trusts the system's root CAs; an object adds a CA and/or a client certificate (mTLS). */
export type TlsOptions =
  | true
  | {
      /** CA certificate(s) that signed the router's certificate (default: the system's roots). */
      ca?: Pem;
      /** Client certificate and its key, for mutual TLS (both or neither). */
      cert?: Pem;
      key?: Pem;
      /** Expected name in the router's certificate when it differs from the address's host. */
      serverName?: string;
    };

export interface ExpertMeshClientOptions {
  /** The router's gRPC address, "host:port". */
  address: string;
  /** Default: plaintext (a trusted cluster network, or TLS terminated in front of the router). */
  tls?: TlsOptions;
  /** Sent on every call as `authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Deadline of a call that sets neither timeoutMs nor deadline; default none. For a stream it
   * bounds the whole generation, retries included. */
  defaultTimeoutMs?: number;
  /** Retries of UNAVAILABLE / RESOURCE_EXHAUSTED (see RetryOptions); `false` disables them. */
  retry?: RetryOptions | false;
  /** Metadata sent on every call (lower-case keys), e.g. a tenant header. */
  metadata?: Readonly<Record<string, string>>;
  /** Raw grpc-js channel options, applied last. */
  channelOptions?: ChannelOptions;
}

/** Options of one call. */
export interface ClientCallOptions {
  /** Deadline relative to the start of the call (retries included); DEADLINE_EXCEEDED after it. */
  timeoutMs?: number;
  /** Absolute deadline, epoch milliseconds; the earlier of this and timeoutMs applies. */
  deadline?: number;
  /** Aborting cancels the call (also mid-stream, also during a retry's wait): CANCELLED. */
  signal?: AbortSignal;
  /** Extra metadata for this call. */
  metadata?: Readonly<Record<string, string>>;
}

/** The options after defaults and validation, as the client uses them. */
export interface CompiledClientOptions {
  readonly address: string;
  readonly credentials: ChannelCredentials;
  readonly channelOptions: ChannelOptions;
  readonly metadata: Readonly<Record<string, string>>;
  readonly defaultTimeoutMs: number | undefined;
  readonly retry: RetryPolicy;
}

/** Validates the options once, at construction: a bad option fails here, not on the first call. */
const CLIENT_OPTIONS: ReadonlySet<string> = new Set<keyof ExpertMeshClientOptions>([
  "address",
  "tls",
  "apiKey",
  "defaultTimeoutMs",
  "retry",
  "metadata",
  "channelOptions",
]);

export function compileClientOptions(options: ExpertMeshClientOptions): CompiledClientOptions {
  for (const key of Object.keys(options)) {
    if (!CLIENT_OPTIONS.has(key)) throw invalidArgument(key, "unknown client option");
  }
  const address = options.address;
  if (typeof address !== "string" || !/^[^\s]+:\d+$/.test(address)) {
    throw invalidArgument("address", `must be "host:port", got ${JSON.stringify(address)}`);
  }
  const { defaultTimeoutMs } = options;
  if (defaultTimeoutMs !== undefined && !(Number.isFinite(defaultTimeoutMs) && defaultTimeoutMs > 0)) {
    throw invalidArgument(
      "defaultTimeoutMs",
      `must be a positive number of milliseconds, got ${defaultTimeoutMs}`,
    );
  }
  const metadata: Record<string, string> = {};
  for (const [key, value] of Object.entries(options.metadata ?? {})) {
    if (key !== key.toLowerCase() || key.endsWith("-bin")) {
      throw invalidArgument(`metadata.${key}`, "keys must be lower-case text metadata (no -bin suffix)");
    }
    metadata[key] = value;
  }
  if (options.apiKey !== undefined) {
    if (options.apiKey === "" || /[\r\n]/.test(options.apiKey)) {
      throw invalidArgument("apiKey", "must be a non-empty single-line string");
    }
    metadata.authorization = `Bearer ${options.apiKey}`;
  }
  const { credentials, channelOptions } = tlsCredentials(options.tls);
  return Object.freeze({
    address,
    credentials,
    channelOptions: { ...channelOptions, ...options.channelOptions },
    metadata: Object.freeze(metadata),
    defaultTimeoutMs,
    retry: compileRetryPolicy(options.retry),
  });
}

function tlsCredentials(tls: TlsOptions | undefined): {
  credentials: ChannelCredentials;
  channelOptions: ChannelOptions;
} {
  if (tls === undefined) return { credentials: ChannelCredentials.createInsecure(), channelOptions: {} };
  if (tls === true) return { credentials: ChannelCredentials.createSsl(), channelOptions: {} };
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw invalidArgument("tls", "cert and key go together (mutual TLS needs both)");
  }
  const credentials = ChannelCredentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert));
  const channelOptions: ChannelOptions =
    tls.serverName === undefined
      ? {}
      : { "grpc.ssl_target_name_override": tls.serverName, "grpc.default_authority": tls.serverName };
  return { credentials, channelOptions };
}

function pem(value: Pem | undefined): Buffer | null {
  if (value === undefined) return null;
  return typeof value === "string" ? Buffer.from(value, "utf8") : Buffer.from(value);
}

/** A call's options resolved against the client's: absolute deadline, merged metadata. */
export interface ResolvedCall {
  readonly deadline: number | undefined;
  readonly signal: AbortSignal | undefined;
  readonly metadata: Readonly<Record<string, string>>;
}

/** Fixes the call's deadline once, at its start, so retries share it. */
export function resolveCall(client: CompiledClientOptions, options: ClientCallOptions = {}): ResolvedCall {
  const timeoutMs =
    options.timeoutMs ?? (options.deadline === undefined ? client.defaultTimeoutMs : undefined);
  if (timeoutMs !== undefined && !(Number.isFinite(timeoutMs) && timeoutMs >= 0)) {
    throw invalidArgument("timeoutMs", `must be a non-negative number of milliseconds, got ${timeoutMs}`);
  }
  if (options.deadline !== undefined && !Number.isFinite(options.deadline)) {
    throw invalidArgument("deadline", `must be epoch milliseconds, got ${options.deadline}`);
  }
  const fromTimeout = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  const deadline =
    fromTimeout === undefined
      ? options.deadline
      : options.deadline === undefined
        ? fromTimeout
        : Math.min(fromTimeout, options.deadline);
  return {
    deadline,
    signal: options.signal,
    metadata: options.metadata === undefined ? client.metadata : { ...client.metadata, ...options.metadata },
  };
}
