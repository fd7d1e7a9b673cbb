import { create, fromBinary, isMessage, toBinary } from "@bufbuild/protobuf";
import type {
  DescMessage,
  DescMethod,
  DescService,
  MessageInitShape,
  MessageShape,
} from "@bufbuild/protobuf";
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";

/** The gRPC path of a method: `/expertmesh.v1.ExpertService/Dispatch`. */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/**
 * Encodes a message, or a plain init object of the schema, to the wire. The Buffer shares the
 * encoder's memory: a 20 MiB dispatch is not copied again on its way to the socket.
 */
export function serializeMessage<Desc extends DescMessage>(
  schema: Desc,
  value: MessageInitShape<Desc>,
): Buffer {
  const message = isMessage(value, schema) ? value : create(schema, value);
  const bytes = toBinary(schema, message);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Decodes a message. `bytes` fields of the result are views into `buffer` at arbitrary offsets
 * (see packed.ts before making a Float32Array of one).
 */
export function deserializeMessage<Desc extends DescMessage>(
  schema: Desc,
  buffer: Uint8Array,
): MessageShape<Desc> {
  return fromBinary(schema, buffer);
}

/**
 * Maps a protobuf-es service descriptor to a grpc-js ServiceDefinition, keyed by the methods'
 * local (camelCase) names, each with its proto name as `originalName`.
 */
export function toGrpcServiceDefinition(service: DescService): ServiceDefinition {
  const definition: Record<string, MethodDefinition<object, object>> = {};
  for (const method of service.methods) {
    definition[method.localName] = toGrpcMethodDefinition(method);
  }
  return definition;
}

function toGrpcMethodDefinition(method: DescMethod): MethodDefinition<object, object> {
  const { input, output, methodKind } = method;
  return {
    path: methodPath(method),
    requestStream: methodKind === "client_streaming" || methodKind === "bidi_streaming",
    responseStream: methodKind === "server_streaming" || methodKind === "bidi_streaming",
    requestSerialize: (value: object) => serializeMessage(input, value as MessageInitShape<DescMessage>),
    requestDeserialize: (buffer: Buffer) => deserializeMessage(input, buffer),
    responseSerialize: (value: object) => serializeMessage(output, value as MessageInitShape<DescMessage>),
    responseDeserialize: (buffer: Buffer) => deserializeMessage(output, buffer),
    originalName: method.name,
  };
}
