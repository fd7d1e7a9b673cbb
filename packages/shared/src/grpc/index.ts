/**
 * gRPC for protobuf-es services on @grpc/grpc-js: typed servers (with health and reflection)
 * and clients. Every failure crosses the wire through `toWireStatus` and comes back as an
 * ExpertMeshError with the same code, message and details.
 */
export { AsyncQueue } from "./async-queue.ts";
export type { AsyncQueueOptions } from "./async-queue.ts";
export type { CallContext } from "./call-context.ts";
export {
  DEFAULT_KEEPALIVE_TIME_MS,
  DEFAULT_KEEPALIVE_TIMEOUT_MS,
  DEFAULT_MAX_MESSAGE_BYTES,
  toChannelOptions,
} from "./channel-options.ts";
export type { TransportOptions } from "./channel-options.ts";
export { createGrpcChannel, createGrpcClient } from "./grpc-client.ts";
export type {
  BidiStream,
  CallOptions,
  ClientMethod,
  GrpcChannel,
  GrpcChannelOptions,
  GrpcClient,
} from "./grpc-client.ts";
export { DEFAULT_SHUTDOWN_GRACE_MS, GrpcServer, createGrpcServer } from "./grpc-server.ts";
export type { GrpcServerOptions, ServingStatus } from "./grpc-server.ts";
export {
  bf16ToFloat32,
  bytesAsFloat32,
  bytesAsInt32,
  bytesAsUint16,
  bytesAsUint32,
  expectByteLength,
  float32ToBf16,
  typedArrayBytes,
} from "./packed.ts";
export { fileDescriptorClosure, reflectionPackageDefinition } from "./reflection-definition.ts";
export type { ReflectionPackageDefinition } from "./reflection-definition.ts";
export type {
  BidiStreamingHandler,
  MethodHandler,
  ServerStreamingHandler,
  ServiceImpl,
  UnaryHandler,
} from "./service-impl.ts";
export {
  deserializeMessage,
  methodPath,
  serializeMessage,
  toGrpcServiceDefinition,
} from "./service-definition.ts";
export { ERROR_DETAILS_TRAILER, fromGrpcError, logInternalErrorsToStderr } from "./wire-error.ts";
export type { HandlerErrorEvent, HandlerErrorLogger } from "./wire-error.ts";
