import type {
  DescMessage,
  DescMethod,
  DescService,
  MessageInitShape,
  MessageShape,
} from "@bufbuild/protobuf";
import { Client, ChannelCredentials, Metadata } from "@grpc/grpc-js";
import type { CallOptions as GrpcCallOptions } from "@grpc/grpc-js";
import { Code, ExpertMeshError } from "../errors.ts";
import { toChannelOptions } from "./channel-options.ts";
import type { TransportOptions } from "./channel-options.ts";
import { iterateReadable } from "./readable-iterator.ts";
import { deserializeMessage, methodPath, serializeMessage } from "./service-definition.ts";
import { fromGrpcError } from "./wire-error.ts";

export interface GrpcChannelOptions extends TransportOptions {
  /** Default: insecure. */
  credentials?: ChannelCredentials;
}

/** One connection (grpc-js channel) to a peer; any number of service clients can share it. */
export interface GrpcChannel {
  /** "host:port" as given. */
  readonly address: string;
  /** The underlying grpc-js client (an escape hatch). */
  readonly client: Client;
  /** Resolves once connected; rejects with UNAVAILABLE if not connected within `timeoutMs`. */
  waitForReady(timeoutMs: number): Promise<void>;
  /** Closes the connection; calls still open fail. */
  close(): void;
}

/** Options of one call. Every failure surfaces as an ExpertMeshError with the server's code. */
export interface CallOptions {
  /** Deadline relative to the start of the call; DEADLINE_EXCEEDED after it. */
  timeoutMs?: number;
  /** Absolute deadline (epoch ms); the earlier of this and timeoutMs applies. */
  deadline?: number;
  /** Aborting cancels the call; the call then fails with CANCELLED. */
  signal?: AbortSignal;
  /** Request metadata (text entries, lower-case keys). */
  metadata?: Readonly<Record<string, string>>;
}

/** The client side of a bidi stream: send requests, iterate responses (one consumer). */
export interface BidiStream<I extends DescMessage, O extends DescMessage> extends AsyncIterable<
  MessageShape<O>
> {
  /** Queues one request (grpc-js buffers it; HTTP/2 flow control paces the socket). */
  send(message: MessageInitShape<I>): void;
  /** Half-closes: no more requests; responses keep coming until the server ends the call. */
  end(): void;
  /** Cancels the call; iteration then fails with CANCELLED. */
  cancel(): void;
}

/** The client function of one method (client-streaming methods are not supported: `never`). */
export type ClientMethod<M> = M extends {
  methodKind: infer K;
  input: infer I extends DescMessage;
  output: infer O extends DescMessage;
}
  ? K extends "unary"
    ? (request: MessageInitShape<I>, options?: CallOptions) => Promise<MessageShape<O>>
    : K extends "server_streaming"
      ? (request: MessageInitShape<I>, options?: CallOptions) => AsyncIterable<MessageShape<O>>
      : K extends "bidi_streaming"
        ? (options?: CallOptions) => BidiStream<I, O>
        : never
  : never;

/**
 * A typed client of a generated service, keyed by the methods' local names:
 * unary → Promise, server-streaming → AsyncIterable (the call starts when iteration does;
 * breaking out of the loop cancels it), bidi → BidiStream.
 */
export type GrpcClient<S extends DescService> = {
  [K in keyof S["method"]]: ClientMethod<S["method"][K]>;
};

/** Opens a channel to `address` with the same generous limits and keepalive as the servers. */
export function createGrpcChannel(address: string, options: GrpcChannelOptions = {}): GrpcChannel {
  const client = new Client(
    address,
    options.credentials ?? ChannelCredentials.createInsecure(),
    toChannelOptions(options),
  );
  return {
    address,
    client,
    waitForReady: (timeoutMs) =>
      new Promise((resolve, reject) => {
        client.waitForReady(Date.now() + timeoutMs, (error) => {
          if (error === undefined) resolve();
          else
            reject(
              new ExpertMeshError(Code.UNAVAILABLE, `${address} not reachable within ${timeoutMs} ms`, {
                cause: error,
              }),
            );
        });
      }),
    close: () => client.close(),
  };
}

/** A typed client of `service` over `channel`. */
export function createGrpcClient<S extends DescService>(service: S, channel: GrpcChannel): GrpcClient<S> {
  const methods: Record<string, unknown> = {};
  for (const method of service.methods) {
    const bound = clientMethod(method, channel.client);
    if (bound !== undefined) methods[method.localName] = bound;
  }
  return methods as GrpcClient<S>;
}

type Message = MessageShape<DescMessage>;
type Init = MessageInitShape<DescMessage>;

function clientMethod(method: DescMethod, client: Client): unknown {
  const path = methodPath(method);
  const serialize = (value: Init): Buffer => serializeMessage(method.input, value);
  const deserialize = (buffer: Buffer): Message => deserializeMessage(method.output, buffer);
  switch (method.methodKind) {
    case "unary":
      return (request: Init, options: CallOptions = {}): Promise<Message> =>
        new Promise((resolve, reject) => {
          const { signal } = options;
          if (signal?.aborted === true) {
            reject(cancelledByCaller());
            return;
          }
          const call = client.makeUnaryRequest(
            path,
            serialize,
            deserialize,
            request,
            toMetadata(options),
            toGrpcCallOptions(options),
            (error, response) => {
              signal?.removeEventListener("abort", onAbort);
              if (error === null && response !== undefined) resolve(response);
              else reject(fromGrpcError(error));
            },
          );
          const onAbort = (): void => call.cancel();
          signal?.addEventListener("abort", onAbort, { once: true });
        });
    case "server_streaming":
      return (request: Init, options: CallOptions = {}): AsyncIterable<Message> =>
        serverStream(client, path, serialize, deserialize, request, options);
    case "bidi_streaming":
      return (options: CallOptions = {}): BidiStream<DescMessage, DescMessage> =>
        bidiStream(client, path, serialize, deserialize, options);
    case "client_streaming":
      return undefined;
  }
}

async function* serverStream(
  client: Client,
  path: string,
  serialize: (value: Init) => Buffer,
  deserialize: (buffer: Buffer) => Message,
  request: Init,
  options: CallOptions,
): AsyncGenerator<Message> {
  const { signal } = options;
  if (signal?.aborted === true) throw cancelledByCaller();
  const call = client.makeServerStreamRequest(
    path,
    serialize,
    deserialize,
    request,
    toMetadata(options),
    toGrpcCallOptions(options),
  );
  const onAbort = (): void => call.cancel();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    yield* iterateReadable<Message>(call, { mapError: fromGrpcError, prematureClose: cancelledByCaller });
  } finally {
    signal?.removeEventListener("abort", onAbort);
    // A no-op once the call has ended; stops it when the consumer broke out early.
    call.cancel();
  }
}

function bidiStream(
  client: Client,
  path: string,
  serialize: (value: Init) => Buffer,
  deserialize: (buffer: Buffer) => Message,
  options: CallOptions,
): BidiStream<DescMessage, DescMessage> {
  const { signal } = options;
  const call = client.makeBidiStreamRequest(
    path,
    serialize,
    deserialize,
    toMetadata(options),
    toGrpcCallOptions(options),
  );
  const onAbort = (): void => call.cancel();
  if (signal?.aborted === true) call.cancel();
  else signal?.addEventListener("abort", onAbort, { once: true });
  call.once("status", () => signal?.removeEventListener("abort", onAbort));
  const responses = iterateReadable<Message>(call, {
    mapError: fromGrpcError,
    prematureClose: cancelledByCaller,
    onReturn: () => call.cancel(),
  });
  let ended = false;
  return {
    send(message) {
      if (ended) throw new ExpertMeshError(Code.FAILED_PRECONDITION, `${path}: send after end`);
      call.write(message);
    },
    end() {
      if (ended) return;
      ended = true;
      call.end();
    },
    cancel() {
      call.cancel();
    },
    [Symbol.asyncIterator]: () => responses[Symbol.asyncIterator](),
  };
}

function toMetadata(options: CallOptions): Metadata {
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(options.metadata ?? {})) metadata.set(key, value);
  return metadata;
}

function toGrpcCallOptions(options: CallOptions): GrpcCallOptions {
  const fromTimeout = options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs;
  const deadline =
    fromTimeout === undefined
      ? options.deadline
      : options.deadline === undefined
        ? fromTimeout
        : Math.min(fromTimeout, options.deadline);
  return deadline === undefined ? {} : { deadline };
}

function cancelledByCaller(): ExpertMeshError {
  return new ExpertMeshError(Code.CANCELLED, "call cancelled");
}
