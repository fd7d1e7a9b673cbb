import { once } from "node:events";
import type { Writable } from "node:stream";
import type {
  DescMessage,
  DescMethod,
  DescService,
  MessageInitShape,
  MessageShape,
} from "@bufbuild/protobuf";
import type {
  MethodDefinition,
  ServerDuplexStream,
  ServerUnaryCall,
  ServerWritableStream,
  ServiceDefinition,
  StatusObject,
  UntypedServiceImplementation,
  sendUnaryData,
} from "@grpc/grpc-js";
import { Code, ExpertMeshError } from "../errors.ts";
import { openCallContext } from "./call-context.ts";
import type { CallContext } from "./call-context.ts";
import { iterateReadable } from "./readable-iterator.ts";
import { methodPath, serializeMessage, toGrpcServiceDefinition } from "./service-definition.ts";
import { handlerErrorStatus } from "./wire-error.ts";
import type { HandlerErrorLogger } from "./wire-error.ts";

/** Request → one response (a message or a plain init object, or a promise of one). */
export type UnaryHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  context: CallContext,
) => Promise<MessageInitShape<O>> | MessageInitShape<O>;

/** Request → a stream of responses (an async or sync generator); returning ends the call with OK. */
export type ServerStreamingHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  context: CallContext,
) => AsyncIterable<MessageInitShape<O>> | Iterable<MessageInitShape<O>>;

/**
 * Stream of requests → stream of responses. Returning (or finishing the generator) ends the call
 * with OK, even if the client is still sending. Responses need not follow requests one to one:
 * return an AsyncQueue and push into it from elsewhere. The request iterable throws the abort
 * reason if the call is cancelled mid-stream.
 */
export type BidiStreamingHandler<I extends DescMessage, O extends DescMessage> = (
  requests: AsyncIterable<MessageShape<I>>,
  context: CallContext,
) => AsyncIterable<MessageInitShape<O>> | Iterable<MessageInitShape<O>>;

/** The handler type of one method (client-streaming methods are not supported: `never`). */
export type MethodHandler<M> = M extends {
  methodKind: infer K;
  input: infer I extends DescMessage;
  output: infer O extends DescMessage;
}
  ? K extends "unary"
    ? UnaryHandler<I, O>
    : K extends "server_streaming"
      ? ServerStreamingHandler<I, O>
      : K extends "bidi_streaming"
        ? BidiStreamingHandler<I, O>
        : never
  : never;

/** An implementation of a generated service: one handler per method, keyed by local name. */
export type ServiceImpl<S extends DescService> = {
  [K in keyof S["method"]]: MethodHandler<S["method"][K]>;
};

export interface ImplementationOptions {
  log: HandlerErrorLogger;
}

type Message = MessageShape<DescMessage>;

/**
 * The grpc-js definition + implementation pair of a service. Responses are encoded here, not
 * by grpc-js, so an encoding failure goes through the same error path as a thrown error.
 */
export function toGrpcImplementation<S extends DescService>(
  service: S,
  impl: ServiceImpl<S>,
  options: ImplementationOptions,
): { definition: ServiceDefinition; implementation: UntypedServiceImplementation } {
  const base = toGrpcServiceDefinition(service);
  const definition: Record<string, MethodDefinition<object, object>> = {};
  const implementation: UntypedServiceImplementation = {};
  const handlers = impl as Record<string, unknown>;
  for (const method of service.methods) {
    const handler = handlers[method.localName];
    if (typeof handler !== "function") {
      throw new ExpertMeshError(
        Code.INVALID_ARGUMENT,
        `${service.typeName}: no handler for ${method.localName}`,
      );
    }
    const baseMethod = base[method.localName] as MethodDefinition<object, object>;
    definition[method.localName] = {
      ...baseMethod,
      responseSerialize: (encoded: object) => encoded as Buffer,
    };
    // Called through the impl object so class-based implementations keep their `this`.
    const call = (...args: unknown[]): unknown => (handler as (...a: unknown[]) => unknown).apply(impl, args);
    implementation[method.localName] = adaptMethod(method, call, options);
  }
  return { definition, implementation };
}

function adaptMethod(
  method: DescMethod,
  handler: (...args: unknown[]) => unknown,
  options: ImplementationOptions,
): UntypedServiceImplementation[string] {
  const path = methodPath(method);
  const encode = (value: unknown): Buffer =>
    serializeMessage(method.output, value as MessageInitShape<DescMessage>);
  const fail = (error: unknown, context: CallContext) => {
    // After a cancellation the client hears nothing more; an abort error is no failure to log.
    const reason: unknown = context.signal.reason;
    const aborted = context.signal.aborted && (error === reason || isAbortError(error));
    return handlerErrorStatus(aborted ? reason : error, path, aborted ? () => undefined : options.log);
  };

  switch (method.methodKind) {
    case "unary":
      return (call: ServerUnaryCall<Message, Buffer>, callback: sendUnaryData<Buffer>) => {
        const { context, close } = openCallContext(call, path);
        void (async () => encode(await handler(call.request, context)))()
          .then(
            (encoded) => callback(null, encoded),
            (error: unknown) => callback(fail(error, context)),
          )
          .finally(close);
      };
    case "server_streaming":
      return (call: ServerWritableStream<Message, Buffer>) => {
        const { context, close } = openCallContext(call, path);
        void streamResponses(call, () => handler(call.request, context), context, encode, fail).finally(
          close,
        );
      };
    case "bidi_streaming":
      return (call: ServerDuplexStream<Message, Buffer>) => {
        const { context, close } = openCallContext(call, path);
        const requests = iterateReadable<Message>(call, {
          mapError: (error) => ExpertMeshError.from(error),
          isCancelled: () => call.cancelled || context.signal.aborted,
          prematureClose: () =>
            (context.signal.reason as ExpertMeshError | undefined) ??
            new ExpertMeshError(Code.CANCELLED, "call cancelled"),
        });
        void streamResponses(call, () => handler(requests, context), context, encode, fail).finally(close);
      };
    case "client_streaming":
      throw new ExpertMeshError(
        Code.UNIMPLEMENTED,
        `${path}: client-streaming methods are not supported by the gRPC adapter`,
      );
  }
}

/**
 * Writes every output of a streaming handler, waiting for 'drain' when grpc-js's buffer is full,
 * then ends the call with OK, or with the handler's error; stops writing once the call is aborted.
 */
async function streamResponses(
  call: Writable,
  produce: () => unknown,
  context: CallContext,
  encode: (value: unknown) => Buffer,
  fail: (error: unknown, context: CallContext) => StatusObject,
): Promise<void> {
  const { signal } = context;
  try {
    for await (const output of produce() as AsyncIterable<unknown> | Iterable<unknown>) {
      if (signal.aborted) break;
      if (!call.write(encode(output))) await once(call, "drain", { signal });
    }
    if (!signal.aborted) call.end();
  } catch (error) {
    const status = fail(error, context);
    // grpc-js turns an 'error' event on a server stream into the call's final status.
    if (!signal.aborted) call.emit("error", status);
  }
}

function isAbortError(error: unknown): boolean {
  return error instanceof Error && error.name === "AbortError";
}
